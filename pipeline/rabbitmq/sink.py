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
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelClosedByBroker,
    ChannelWrongStateError,
    NackError,
    UnroutableError,
)

from pipeline.rabbitmq.errors import RabbitQueueMissing, RabbitRefused, RabbitUnavailable

__all__ = ["Outgoing", "QueueSink", "RabbitSinkError", "parameters"]

log = logging.getLogger(__name__)
# pika logs every failed connection attempt as several ERROR lines with a traceback (once a
# second per partition while RabbitMQ is down); the worker reports RabbitMQ faults itself, as
# a stall reason and one warning per change, so only pika's CRITICAL lines are kept.
logging.getLogger("pika").setLevel(logging.CRITICAL)

#: seconds a connect, a blocked connection (a resource alarm) or a silent socket may take
#: before it counts as a fault: the worker's main thread waits on the sink's confirms.
TIMEOUT = 5.0
#: AMQP heartbeat: a node that stops answering (no RST: a partition, a frozen VM) is noticed
#: within about two of these, also while a publisher waits for a confirm. An idle
#: publisher's connection, whose heartbeats nobody sends, is closed by the broker meanwhile
#: and replaced at its next batch (`send_all`'s second attempt).
HEARTBEAT = 20
#: seconds a batch's confirms may take before the connection counts as failed
CONFIRM_TIMEOUT = 30.0


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


class _Confirms:
    """Publisher confirms for a whole batch in one wait: pika's blocking channel waits for the
    broker's ack after *each* message (a round trip per message), so the sink publishes on the
    channel's underlying asynchronous channel (``BlockingChannel._impl``, pika 1.x, locked) and
    counts the acks, nacks and returns itself while the blocking connection pumps I/O. Delivery
    tags number the channel's publishes from 1 (confirm mode), an ack or nack with
    ``multiple`` covers every tag up to its own."""

    def __init__(self, conn: pika.BlockingConnection, channel: BlockingChannel) -> None:
        self.conn, self.channel = conn, channel
        self.impl = channel._impl
        self.next_tag = 1
        self.outstanding: deque[int] = deque()
        self.nacked = 0
        self.returned = 0
        selected = [False]

        def on_select(_frame: object) -> None:
            selected[0] = True

        self.impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select)
        self.impl.add_on_return_callback(self._on_return)
        self._wait(lambda: selected[0], "confirm.select-ok")

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag, multiple = method.delivery_tag, method.multiple
        nack = isinstance(method, pika.spec.Basic.Nack)
        out = self.outstanding
        if multiple:
            while out and out[0] <= tag:
                out.popleft()
                self.nacked += nack
        elif tag in out:
            out.remove(tag)
            self.nacked += nack

    def _on_return(self, *_args: object) -> None:
        self.returned += 1  # a mandatory message no queue took (its ack follows)

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        """Pump I/O until ``done()`` (pika's own wait, `BlockingChannel._flush_output`, which
        `process_data_events` would not end early for callbacks of the underlying channel);
        a timer wakes it at the deadline. A closed channel or connection raises."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        timer = self.conn.call_later(CONFIRM_TIMEOUT, lambda: None)
        try:
            self.channel._flush_output(lambda: done() or time.monotonic() >= deadline)
        finally:
            self.conn.remove_timeout(timer)
        if not self.channel.is_open:
            raise ChannelWrongStateError(f"channel closed while waiting for {what}")
        if not done():
            raise AMQPConnectionError(f"no {what} within {CONFIRM_TIMEOUT:.0f}s")

    def publish(self, exchange: str, batch: list[Outgoing]) -> None:
        """Publish ``batch`` and return once every message is confirmed; a nack or a return
        raises (`NackError`/`UnroutableError`, as pika's blocking channel would)."""
        self.nacked = self.returned = 0
        publish = self.impl.basic_publish
        persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        for m in batch:
            props = persistent
            if m.key:
                key = m.key.decode("utf-8", "replace")
                props = pika.BasicProperties(delivery_mode=2, headers={"key": key})
            publish(exchange, m.routing_key, m.body, props, mandatory=True)
            self.outstanding.append(self.next_tag)
            self.next_tag += 1
        self._wait(lambda: not self.outstanding, f"confirms of {len(batch)} message(s)")
        if self.nacked:
            raise NackError([])
        if self.returned:
            raise UnroutableError([])


class QueueSink:
    """Publishes to ``exchange`` ("" = the default exchange: routing key = queue name) of the
    node at ``url`` (``amqp://user:password@host:port/vhost``) with publisher confirms.
    ``pipelined=False`` waits for each message's confirm in turn (pika's own blocking
    channel: the slower, simpler path, kept to compare against)."""

    def __init__(
        self, url: str, exchange: str = "", attempts: int = 3, pipelined: bool = True
    ) -> None:
        self._params = parameters(url)
        self._exchange = exchange
        self._attempts = attempts
        self._pipelined = pipelined
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._confirms: _Confirms | None = None

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
            if self._pipelined:
                self._confirms = _Confirms(self._conn, channel)
            else:
                channel.confirm_delivery()  # every basic_publish now waits for its ack
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
        conn, self._conn, self._channel, self._confirms = self._conn, None, None, None
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
                if self._confirms is not None:
                    self._confirms.publish(self._exchange, batch)
                    return len(batch)
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
                n = len(exc.messages) or "some"
                last = RabbitSinkError(f"RabbitMQ refused {n} message(s): {type(exc).__name__}")
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
