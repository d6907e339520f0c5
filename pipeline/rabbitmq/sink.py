"""A RabbitMQ sink with publisher confirms, at-least-once (issue 19; docs/architecture.md,
"RabbitMQ sources").

`QueueSink.send_all` returns only when the broker has confirmed every message of the batch
(persistent, ``mandatory``: a message no queue takes is an error, not a silent drop), so the
worker may agree a checkpoint covering the inputs once it returns, exactly as it does after a
Kafka producer's ``flush``. A connection or channel that fails mid-batch is dropped and the
batch is resent on a fresh one: messages confirmed before the failure arrive again
(duplicates, never losses: at-least-once). A nack or an unroutable message raises
`RabbitSinkError` after the resend fails too, since retrying the same answer forever would
stall without saying why.

Not done yet: the job API (``to_rabbitmq``), the worker's use of this class and the queue
source; this is the delivery part, tested against a real RabbitMQ node.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, NackError, UnroutableError

from pipeline.errors import PipelineError

__all__ = ["Outgoing", "QueueSink", "RabbitSinkError"]

log = logging.getLogger(__name__)


class RabbitSinkError(PipelineError):
    """The broker refused messages (nack, or no queue bound for the routing key)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message: its routing key (the queue's name on the default exchange) and body;
    ``key`` travels as the application property ``key``, as the stream source reads it."""

    routing_key: str
    body: bytes
    key: bytes | None = None


class QueueSink:
    """Publishes to ``exchange`` ("" = the default exchange: routing key = queue name) of the
    node at ``url`` (``amqp://user:password@host:port/vhost``) with publisher confirms."""

    def __init__(self, url: str, exchange: str = "", attempts: int = 3) -> None:
        self._params = pika.URLParameters(url)
        self._exchange = exchange
        self._attempts = attempts
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            self._conn = pika.BlockingConnection(self._params)
            channel = self._conn.channel()
            channel.confirm_delivery()  # every basic_publish now waits for the broker's ack
            self._channel = channel
        return self._channel

    def _drop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(AMQPError):
                conn.close()

    def send_all(self, messages: Iterable[Outgoing]) -> int:
        """Publish every message and wait for each confirm; returns how many were sent.

        On a connection fault the whole batch is sent again on a new connection (after a
        short back-off), up to ``attempts`` times; then the last error goes up."""
        batch = list(messages)
        last: Exception | None = None
        for attempt in range(self._attempts):
            try:
                channel = self._open()
                for m in batch:
                    props = pika.BasicProperties(
                        delivery_mode=pika.DeliveryMode.Persistent,
                        headers={"key": m.key.decode("utf-8", "replace")} if m.key else None,
                    )
                    channel.basic_publish(
                        self._exchange, m.routing_key, m.body, props, mandatory=True
                    )
                return len(batch)
            except (NackError, UnroutableError) as exc:
                last = RabbitSinkError(f"RabbitMQ refused {len(exc.messages)} message(s): {exc}")
            except AMQPError as exc:
                last = exc
                log.warning("RabbitMQ sink: %r; resending the batch on a new connection", exc)
            self._drop()
            time.sleep(min(0.2 * 2**attempt, 2.0))
        assert last is not None
        raise last

    def close(self) -> None:
        self._drop()
