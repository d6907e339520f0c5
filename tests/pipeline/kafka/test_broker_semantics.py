"""The exact broker behaviour the exactly-once design (docs/architecture.md, sec. 4) relies on,
proven against the real Apache Kafka broker: manual assignment from explicit offsets,
transactions invisible to read_committed readers until committed, and offsets committed inside a
transaction for a consumer that never joined a group."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipeline.kafka import create_topics, end_offsets

pytestmark = pytest.mark.integration


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _consume(
    consumer: Consumer, expected: int, timeout: float = 30.0
) -> list[tuple[int, int, bytes]]:
    """Poll until `expected` records arrived or the deadline passes; returns (partition,
    offset, value) triples. Never sleeps: `consume` blocks on the broker."""
    out: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            out.append((msg.partition(), msg.offset(), msg.value()))
    return out


def _drain(consumer: Consumer, idle: float = 2.0) -> list[bytes]:
    """Everything the consumer can read until it hits the end of every assigned partition."""
    values: list[bytes] = []
    eof: set[int] = set()
    assigned = {tp.partition for tp in consumer.assignment()}
    deadline = time.monotonic() + 30
    while eof != assigned and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=idle):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    continue
                raise AssertionError(msg.error())
            values.append(msg.value())
    assert eof == assigned, "did not reach the end of every partition"
    return values


@pytest.fixture
def consumers(kafka_bootstrap: str) -> Iterator[list[Consumer]]:
    made: list[Consumer] = []
    yield made
    for c in made:
        c.close()


def _consumer(bootstrap: str, made: list[Consumer], **extra: object) -> Consumer:
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"smoke-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
    }
    conf.update(extra)
    c = Consumer(conf)
    made.append(c)
    return c


def test_ten_thousand_records_read_back_with_assign_from_explicit_offsets(
    kafka_bootstrap: str, consumers: list[Consumer]
) -> None:
    topic = _topic("smoke-assign")
    create_topics(kafka_bootstrap, {topic: 4})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    sent = {f"value-{i}".encode() for i in range(10_000)}
    for i in range(10_000):
        producer.produce(topic, key=f"key-{i % 97}".encode(), value=f"value-{i}".encode())
    assert producer.flush(30) == 0

    ends = end_offsets(kafka_bootstrap, [(topic, p) for p in range(4)])
    assert sum(ends.values()) == 10_000
    assert all(n > 0 for n in ends.values()), f"keys did not spread over 4 partitions: {ends}"

    everything = _consumer(kafka_bootstrap, consumers)
    everything.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got = _consume(everything, 10_000)
    assert {v for _, _, v in got} == sent
    assert len(got) == 10_000

    # From an explicit offset in the middle: exactly the tail of that partition, in order.
    start = ends[(topic, 1)] // 2
    tail = _consumer(kafka_bootstrap, consumers)
    tail.assign([TopicPartition(topic, 1, start)])
    rest = _consume(tail, ends[(topic, 1)] - start)
    assert [o for _, o, _ in rest] == list(range(start, ends[(topic, 1)]))


def test_aborted_transaction_is_invisible_to_read_committed_and_committed_one_is_seen(
    kafka_bootstrap: str, consumers: list[Consumer]
) -> None:
    topic = _topic("smoke-txn")
    create_topics(kafka_bootstrap, {topic: 1})
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"smoke-{topic}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    committed_reader = _consumer(
        kafka_bootstrap, consumers, **{"isolation.level": "read_committed"}
    )
    committed_reader.assign([TopicPartition(topic, 0, 0)])
    assert _drain(committed_reader) == [b"committed-0", b"committed-1", b"committed-2"]

    # The aborted records are physically in the log: a read_uncommitted reader sees them, so
    # the assertion above is about isolation, not about records that never arrived.
    dirty_reader = _consumer(kafka_bootstrap, consumers, **{"isolation.level": "read_uncommitted"})
    dirty_reader.assign([TopicPartition(topic, 0, 0)])
    seen = _drain(dirty_reader)
    assert [v for v in seen if v.startswith(b"aborted")] == [
        f"aborted-{i}".encode() for i in range(5)
    ]


def test_send_offsets_to_transaction_with_a_manually_assigned_consumer(
    kafka_bootstrap: str, consumers: list[Consumer]
) -> None:
    source, sink = _topic("smoke-src"), _topic("smoke-sink")
    create_topics(kafka_bootstrap, {source: 2, sink: 1})
    group = f"paxline.smoke.{uuid.uuid4().hex[:6]}"
    consumer = _consumer(kafka_bootstrap, consumers, **{"group.id": group})
    consumer.assign([TopicPartition(source, 0, 0), TopicPartition(source, 1, 0)])
    tp0 = TopicPartition(source, 0)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{group}"})
    producer.init_transactions(30)

    # An aborted transaction's offsets are not committed ...
    producer.begin_transaction()
    producer.produce(sink, value=b"lost")
    producer.send_offsets_to_transaction(
        [TopicPartition(source, 0, 17)], consumer.consumer_group_metadata(), 30
    )
    producer.abort_transaction(30)
    assert consumer.committed([tp0], timeout=30)[0].offset < 0

    # ... a committed one's are, for a consumer that used assign() and never joined the group.
    producer.begin_transaction()
    producer.produce(sink, value=b"kept")
    producer.send_offsets_to_transaction(
        [TopicPartition(source, 0, 42), TopicPartition(source, 1, 7)],
        consumer.consumer_group_metadata(),
        30,
    )
    producer.commit_transaction(30)
    committed = consumer.committed([tp0, TopicPartition(source, 1)], timeout=30)
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 42), (1, 7)]


def test_topics_get_the_replication_the_cluster_allows(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    from pipeline.kafka.admin import topic_replication

    assert [topic_replication(n) for n in (1, 2, 3, 5)] == [1, 2, 3, 3]
    topic = _topic("rf")
    create_topics(kafka_bootstrap, {topic: 2})
    meta = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=30)
    brokers = len(meta.brokers)
    assert brokers >= 1
    rfs = {len(p.replicas) for p in meta.topics[topic].partitions.values()}
    assert rfs == {min(3, brokers)}
