"""Small helpers for examples and operators (issue 19): fill a queue, read one out. The worker
does not use them; they keep pika inside this package for code outside it."""

from __future__ import annotations

from collections.abc import Iterable

import pika

from pipeline.rabbitmq.sink import Outgoing, QueueSink, parameters

__all__ = ["drain_queue", "publish_queue"]


def publish_queue(
    url: str, queue: str, bodies: Iterable[bytes], declare: str | None = "classic"
) -> int:
    """Declare ``queue`` if missing (durable, of type ``declare``) and publish ``bodies`` with
    confirms; returns how many RabbitMQ confirmed."""
    sink = QueueSink(url)
    try:
        sink.ensure_queue(queue, declare)
        return sink.send_all(Outgoing(queue, b) for b in bodies)
    finally:
        sink.close()


def drain_queue(url: str, queue: str) -> list[tuple[str | None, bytes]]:
    """Take every message out of ``queue`` (acknowledged): (header ``key``, body) each."""
    conn = pika.BlockingConnection(parameters(url))
    out: list[tuple[str | None, bytes]] = []
    try:
        channel = conn.channel()
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            key = (props.headers or {}).get("key")
            out.append((None if key is None else str(key), body))
    finally:
        conn.close()
