"""The queue reader (pipeline/rabbitmq/queues.py) and the sink's publisher (runner.py) against
a real RabbitMQ node, without a worker: the at-least-once contract of a queue source is that a
message leaves the queue only once a checkpoint covering its virtual offset is agreed, and
that whatever was delivered and not acknowledged comes back to the next subscription."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from paxline.localstack.common import wait_until
from paxline.localstack.rabbitmq import RabbitNode
from pipeline.executor.records import RABBITMQ_TOPIC, InRecord, OutRecord
from pipeline.job import Job
from pipeline.rabbitmq.errors import RabbitQueueMissing, RabbitUnavailable
from pipeline.rabbitmq.queues import QueueReader
from pipeline.rabbitmq.runner import publisher_for
from pipeline.rabbitmq.sink import QueueSink

TOPIC = "paxline.t.rabbitmq-queue.q"


@pytest.fixture
def channel(
    rabbitmq_node: RabbitNode,
) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_node.amqp_url))
    try:
        yield conn.channel()
    finally:
        conn.close()


def counts(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> int:
    """Messages ready in the queue: delivered, unacknowledged ones count again only once
    their consumer's channel is gone and RabbitMQ returned them."""
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def read(reader: QueueReader, n: int) -> list[InRecord]:
    got: list[InRecord] = []

    def enough() -> bool:
        for recs in reader.poll_batch(1000, 0.1).values():
            got.extend(recs)
        return len(got) >= n

    wait_until(enough, 30, f"{n} records")
    return got


@pytest.mark.parametrize("kind", ["classic", "quorum"])
def test_a_message_is_acknowledged_only_once_its_checkpoint_is_agreed(
    rabbitmq_node: RabbitNode,
    channel: pika.adapters.blocking_connection.BlockingChannel,
    kind: str,
) -> None:
    queue = f"src-{kind}"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": kind})
    channel.confirm_delivery()
    for i in range(10):
        props = pika.BasicProperties(headers={"key": f"k{i % 2}"})
        channel.basic_publish("", queue, f"m{i}".encode(), props)
    reader = QueueReader(TOPIC, {0: queue}, rabbitmq_node.amqp_url, prefetch=100)
    try:
        reader.assign([(TOPIC, 0, 40)])  # resume offset 40: deliveries are numbered from it
        first = read(reader, 10)
        assert [r.offset for r in first] == list(range(40, 50))
        assert [r.value for r in first] == [f"m{i}".encode() for i in range(10)]
        assert [r.key for r in first[:2]] == [b"k0", b"k1"]
        assert reader.positions([(TOPIC, 0)]) == {(TOPIC, 0): 50}
        reader.agreed((TOPIC, 0), 46)  # covers m0..m5
        # the partition moves away (or its worker dies): m6..m9 were never covered
        reader.unassign([(TOPIC, 0)])
        wait_until(lambda: counts(channel, queue) == 4, 30, "m6..m9 back in the queue")
        reader.assign([(TOPIC, 0, 46)])  # the next owner resumes from the agreed offset
        again = read(reader, 4)
        assert sorted(r.value or b"" for r in again) == [f"m{i}".encode() for i in range(6, 10)]
        assert [r.offset for r in again] == [46, 47, 48, 49]
        assert reader.faults() == {}
    finally:
        reader.close()
    # closing without an agreed checkpoint acknowledged nothing more: redelivered later
    wait_until(lambda: counts(channel, queue) == 4, 30, "the uncovered messages requeued")


def test_a_missing_queue_and_a_node_that_is_down_are_reported_as_faults(
    rabbitmq_node: RabbitNode,
) -> None:
    reader = QueueReader(TOPIC, {0: "no-such-queue"}, rabbitmq_node.amqp_url, prefetch=10)
    try:
        reader.assign([(TOPIC, 0, None)])
        seen: dict[tuple[str, int], Exception] = {}
        wait_until(lambda: bool(seen.update(reader.faults()) or seen), 30, "a fault")
        assert isinstance(seen[(TOPIC, 0)], RabbitQueueMissing)
        assert "'no-such-queue' does not exist" in str(seen[(TOPIC, 0)])
        assert reader.faults() == {}  # reported once per subscription
        # what the worker's takeover asks first, so the partition stays stalled meanwhile
        with pytest.raises(RabbitQueueMissing, match="'no-such-queue' does not exist"):
            reader.check(0)
    finally:
        reader.close()
    down = QueueReader(TOPIC, {0: "q"}, "amqp://guest:guest@127.0.0.1:9/", prefetch=10)
    try:
        down.assign([(TOPIC, 0, None)])
        seen = {}
        wait_until(lambda: bool(seen.update(down.faults()) or seen), 30, "a fault")
        assert isinstance(seen[(TOPIC, 0)], RabbitUnavailable)
        assert seen[(TOPIC, 0)].reason == "RabbitMQ unavailable"  # type: ignore[attr-defined]
        with pytest.raises(RabbitUnavailable):
            down.check(0)
    finally:
        down.close()


def test_the_publisher_sends_only_rabbitmq_outputs_and_declares_a_missing_queue(
    rabbitmq_node: RabbitNode, channel: pika.adapters.blocking_connection.BlockingChannel
) -> None:
    url = rabbitmq_node.amqp_url
    job = Job("p").source("in", partitions=1).to_rabbitmq("pub-out", url=url, declare="quorum")
    factory = publisher_for(job)
    assert factory is not None
    publisher = factory()  # declares the quorum queue
    try:
        changelog = OutRecord("paxline.p.changelog.0", b"k", b"v")
        rest = publisher.send([OutRecord(RABBITMQ_TOPIC, b"a", b"1"), changelog,
                               OutRecord(RABBITMQ_TOPIC, None, b"2")])  # fmt: skip
        assert rest == [changelog]
    finally:
        publisher.close()
    wait_until(lambda: counts(channel, "pub-out") == 2, 10, "both messages in the queue")
    strict = Job("p").source("in", partitions=1).to_rabbitmq("absent", url=url, declare=None)
    with pytest.raises(RabbitQueueMissing, match="'absent' does not exist"):
        factory = publisher_for(strict)
        assert factory is not None
        factory()
    with pytest.raises(RabbitUnavailable):
        QueueSink("amqp://guest:guest@127.0.0.1:9/").open()
