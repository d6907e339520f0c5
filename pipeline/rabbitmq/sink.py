"""A RabbitMQ sink with publisher confirms, at-least-once (issue 19; docs/architecture.md,
"RabbitMQ sources").

`QueueSink.send_all` returns only when the broker has confirmed every message of the batch
(persistent, ``mandatory``: a message no queue takes is an error, not a silent drop), so the
worker may agree a checkpoint covering the inputs once it returns, exactly as it does after a
Kafka producer's ``flush``. A connection or channel that fails mid-batch is dropped and the
batch is resent on a fresh one: messages confirmed before the failure arrive again
(duplicates, never losses: at-least-once). A nack or an unroutable message raises
`RabbitSinkError` after the resend fails too, and a node that does not answer raises
`RabbitUnavailable`: both transient (pipeline/rabbitmq/errors.py), so the worker stalls the
partition saying why instead of retrying the same answer forever or exiting.

The worker's use of it, per owned partition, is pipeline/rabbitmq/runner.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker, NackError, UnroutableError

from pipeline.rabbitmq.errors import RabbitQueueMissing, RabbitRefused, RabbitUnavailable

__all__ = ["Outgoing", "QueueSink", "RabbitSinkError", "parameters"]

log = logging.getLogger(__name__)

#: seconds a connect, a blocked connection (a resource alarm) or a silent socket may take
#: before it counts as a fault: the worker's main thread waits on the sink's confirms.
TIMEOUT = 5.0
#: AMQP heartbeat: a node that stops answering (no RST: a partition, a frozen VM) is noticed
#: within about two of these, also while a publisher waits for a confirm. An idle
#: publisher's connection, whose heartbeats nobody sends, is closed by the broker meanwhile
#: and replaced at its next batch (`send_all`'s second attempt).
HEARTBEAT = 20


class RabbitSinkError(RabbitRefused):
    """The broker refused messages (nack, or no queue bound for the routing key)."""


def parameters(url: str, timeout: float = TIMEOUT) -> pika.URLParameters:
    """Connection parameters of ``url`` with bounded waits: one connection attempt, socket
    and handshake timeouts, and a blocked connection (memory or disk alarm) dropped after
    ``timeout`` instead of holding its publisher for ever."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.stack_timeout = timeout * 2
    params.blocked_connection_timeout = timeout
    params.heartbeat = HEARTBEAT
    return params


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
        self._params = parameters(url)
        self._exchange = exchange
        self._attempts = attempts
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def open(self) -> None:
        """Connect now (a fault raises `RabbitUnavailable`) rather than at the first batch."""
        try:
            self._open()
        except AMQPError as exc:
            self._drop()
            raise RabbitUnavailable(f"RabbitMQ at {self._where()}: {exc!r}") from exc

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            self._conn = pika.BlockingConnection(self._params)
            channel = self._conn.channel()
            channel.confirm_delivery()  # every basic_publish now waits for the broker's ack
            self._channel = channel
        return self._channel

    def ensure_queue(self, queue: str, declare: str | None) -> None:
        """Check that ``queue`` exists; if not, declare it durable of type ``declare``
        ("classic", "quorum") or, with None, raise `RabbitQueueMissing`. A fault of the node
        raises `RabbitUnavailable`."""
        try:
            conn = pika.BlockingConnection(self._params)
        except AMQPError as exc:
            raise RabbitUnavailable(f"RabbitMQ at {self._where()}: {exc!r}") from exc
        try:
            try:
                conn.channel().queue_declare(queue, passive=True)
                return
            except ChannelClosedByBroker as exc:
                if exc.reply_code != 404:
                    raise
            if declare is None:
                raise RabbitQueueMissing(
                    f"RabbitMQ queue {queue!r} does not exist at {self._where()} "
                    "(the job has declare=None: declare the queue)"
                )
            conn.channel().queue_declare(queue, durable=True, arguments={"x-queue-type": declare})
            log.info("declared %s queue %r", declare, queue)
        except AMQPError as exc:
            raise RabbitUnavailable(f"RabbitMQ at {self._where()}: {exc!r}") from exc
        finally:
            with contextlib.suppress(AMQPError):
                if conn.is_open:
                    conn.close()

    def _where(self) -> str:
        return f"{self._params.host}:{self._params.port}"

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
                last = RabbitUnavailable(f"RabbitMQ at {self._where()}: {exc!r}")
                level = logging.INFO if attempt == 0 else logging.WARNING
                log.log(level, "RabbitMQ sink: %r; sending the batch on a new connection", exc)
            self._drop()
            if attempt + 1 < self._attempts:
                time.sleep(min(0.2 * 2**attempt, 2.0))
        assert last is not None
        raise last

    def close(self) -> None:
        self._drop()
