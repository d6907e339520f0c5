"""The RabbitMQ sink (pipeline/rabbitmq/sink.py) against a real node: what `send_all` returned
for is in the queue (publisher confirms), on classic and quorum queues alike, and a message no
queue takes is an error, never a silent drop."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from paxline.localstack.rabbitmq import RabbitNode
from pipeline.rabbitmq.sink import Outgoing, QueueSink, RabbitSinkError


@pytest.fixture
def channel(
    rabbitmq_node: RabbitNode,
) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_node.amqp_url))
    try:
        yield conn.channel()
    finally:
        conn.close()


def drain(channel: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> list[bytes]:
    out: list[bytes] = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body)


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "per-message"])
@pytest.mark.parametrize("kind", ["classic", "quorum"])
def test_every_confirmed_message_is_in_the_queue(
    rabbitmq_node: RabbitNode,
    channel: pika.adapters.blocking_connection.BlockingChannel,
    kind: str,
    pipelined: bool,
) -> None:
    queue = f"sink-{kind}-{pipelined}"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": kind})
    sink = QueueSink(rabbitmq_node.amqp_url, pipelined=pipelined)
    try:
        sent = sink.send_all(Outgoing(queue, f"m{i}".encode(), b"k") for i in range(200))
        sent += sink.send_all(Outgoing(queue, f"m{i}".encode()) for i in range(200, 300))
    finally:
        sink.close()
    assert sent == 300
    assert drain(channel, queue) == [f"m{i}".encode() for i in range(300)]


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "per-message"])
def test_a_message_no_queue_takes_is_an_error(
    rabbitmq_node: RabbitNode,
    channel: pika.adapters.blocking_connection.BlockingChannel,
    pipelined: bool,
) -> None:
    channel.queue_declare("sink-mixed", durable=True)
    sink = QueueSink(rabbitmq_node.amqp_url, attempts=1, pipelined=pipelined)
    try:
        with pytest.raises(RabbitSinkError, match="refused"):
            sink.send_all([Outgoing("no-such-queue", b"x")])
        # in the middle of a batch too: the batch is not reported sent
        with pytest.raises(RabbitSinkError, match="refused"):
            sink.send_all([Outgoing("sink-mixed", b"ok"), Outgoing("no-such-queue", b"x")])
    finally:
        sink.close()
