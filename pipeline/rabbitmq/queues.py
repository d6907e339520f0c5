"""Reading RabbitMQ classic and quorum queues for a job's first stage, at-least-once (issue 19;
docs/architecture.md, "RabbitMQ queues").

A queue has no offsets, so it maps onto the job's checkpoints through *virtual* ones: the
anchor topic `paxline.{job}.rabbitmq-queue.{queue}` has one partition per queue, and when the
worker assigns partition p at its resume offset R, the reader numbers the messages it delivers
R, R+1, ... Checkpoints, positions and lag are those numbers, exactly as for a Kafka partition.
A message is acknowledged only once a checkpoint covering its number is agreed by the
coordinators (`agreed`): one ``basic.ack(multiple=True)`` up to its delivery tag. Whatever
was delivered and not acknowledged when the partition moves, its worker dies or the connection
breaks is redelivered by RabbitMQ to the next subscription, numbered again from that
subscription's resume offset and processed again: duplicates, never losses. The numbers are
valid for one subscription only (a redelivered message may get another number), so records
of a queue carry no provenance position (`pipeline.executor.provenance.stamp_origin`) and are
never dropped downstream as duplicates. Exactly-once is refused at submit (pipeline/spec.py).

pika's BlockingConnection belongs to one thread: the reader's own, which owns the connection
(one channel and consumer per assigned partition, ``prefetch`` unacknowledged messages each),
buffers deliveries per partition for `poll_batch`, and carries out the acknowledgements and
unsubscriptions the worker asks for. A fault - the node down, the connection lost, the queue
missing or deleted, a channel closed by the broker - is reported once per subscription through
`faults` and nothing more is delivered on it; the worker then stalls the partition with the
fault's reason and takes it over again (a new subscription, after back-off), so the reason
shows in `paxline status` and the metrics, and the partition resumes by itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from pipeline.errors import TransientError
from pipeline.executor.records import InRecord
from pipeline.rabbitmq.buffered import BufferedPartitions
from pipeline.rabbitmq.errors import RabbitQueueMissing, RabbitUnavailable
from pipeline.rabbitmq.sink import parameters

__all__ = ["QueueReader"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
RETRY_SECONDS = 1.0
READY_EVERY = 2.0  # seconds between queue depth reads (lag shown on the dashboard)


@dataclass
class _Sub:
    """One assigned partition's subscription. `next` is the virtual offset of the next
    delivery; `tags` maps delivered, unacknowledged offsets to delivery tags; `ack_to` is the
    highest agreed checkpoint not acknowledged yet. `channel` is the reader thread's."""

    queue: str
    next: int
    buf: deque[InRecord] = field(default_factory=deque)
    tags: deque[tuple[int, int]] = field(default_factory=deque)
    ack_to: int | None = None
    ready: int = 0
    failed: bool = False
    channel: BlockingChannel | None = None
    ready_at: float = 0.0


def _key(props: pika.BasicProperties) -> bytes | None:
    headers = props.headers or {}
    k = headers.get("key")
    if k is None:
        return None
    return k if isinstance(k, bytes) else str(k).encode()


class QueueReader(BufferedPartitions):
    """The records of `topic`'s partitions, read from RabbitMQ queues (see the module doc).
    Same surface as the Kafka `Source` for what the worker uses of a stage's input, plus
    `faults` and `agreed`."""

    def __init__(self, topic: str, queues: dict[int, str], url: str, prefetch: int) -> None:
        self.topic = topic
        self._queues = queues
        self._params = parameters(url)
        self._where = f"{self._params.host}:{self._params.port}"
        self._prefetch = prefetch
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()
        self._subs: dict[int, _Sub] = {}
        self._leaving: list[_Sub] = []  # unassigned: ack what was agreed, then unsubscribe
        self._faults: dict[TP, Exception] = {}
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closing = False
        self._conn: pika.BlockingConnection | None = None  # the reader thread's
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"rabbitmq-{topic}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- worker thread side
    def assign(self, partitions: list[tuple[str, int, int | None]]) -> None:
        with self._cond:
            for topic, p, offset in partitions:
                old = self._subs.pop(p, None)
                if old is not None:
                    self._leaving.append(old)
                self._subs[p] = _Sub(self._queues[p], offset or 0)
                self._faults.pop((topic, p), None)
                self.assigned.add((topic, p))
        self._wake.set()

    def unassign(self, partitions: list[TP]) -> None:
        with self._cond:
            for topic, p in partitions:
                if (topic, p) not in self.assigned:
                    continue
                self.assigned.discard((topic, p))
                self.paused.discard((topic, p))
                self._faults.pop((topic, p), None)
                old = self._subs.pop(p, None)
                if old is not None:
                    old.buf.clear()
                    self._leaving.append(old)
            self._cond.notify_all()
        self._wake.set()

    def high_watermarks(self, partitions: list[TP]) -> dict[TP, int]:
        """The virtual offset after the last delivery plus the messages ready in the queue
        (read every few seconds): the lag counts both."""
        with self._cond:
            subs = {p: s.next + s.ready for p, s in self._subs.items()}
        return {(t, p): subs[p] for t, p in partitions if p in subs}

    def positions(self, partitions: list[TP]) -> dict[TP, int]:
        """The virtual offset `poll_batch` returns next (buffered records are still lag)."""
        with self._cond:
            subs = {p: s.buf[0].offset if s.buf else s.next for p, s in self._subs.items()}
        return {(t, p): subs[p] for t, p in partitions if p in subs}

    def check(self, partition: int) -> None:
        """Raise the fault that would stop partition ``partition`` now: RabbitMQ not answering
        (`RabbitUnavailable`) or its queue missing (`RabbitQueueMissing`). The worker's takeover
        calls it on its own thread (its own short connection), so a partition stays stalled,
        named, while RabbitMQ is away instead of being installed only to fail again."""
        queue = self._queues[partition]
        try:
            conn = pika.BlockingConnection(self._params)
        except AMQPError as exc:
            raise RabbitUnavailable(f"RabbitMQ at {self._where}: {exc!r}") from exc
        try:
            conn.channel().queue_declare(queue, passive=True)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise RabbitUnavailable(f"RabbitMQ queue {queue!r}: {exc.reply_text}") from exc
            raise RabbitQueueMissing(
                f"RabbitMQ queue {queue!r} does not exist at {self._where}: declare it "
                "(classic or quorum, durable)"
            ) from None
        except AMQPError as exc:
            raise RabbitUnavailable(f"RabbitMQ at {self._where}: {exc!r}") from exc
        finally:
            with contextlib.suppress(AMQPError):
                if conn.is_open:
                    conn.close()

    def faults(self) -> dict[TP, Exception]:
        """The faults of current subscriptions since the last call (each reported once)."""
        with self._cond:
            out, self._faults = self._faults, {}
        return out

    def agreed(self, tp: TP, offset: int) -> None:
        """A checkpoint at `offset` is agreed: acknowledge every delivery numbered below it."""
        with self._cond:
            sub = self._subs.get(tp[1]) if tp[0] == self.topic else None
            if sub is not None and (sub.ack_to is None or offset > sub.ack_to):
                sub.ack_to = offset
        self._wake.set()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            for sub in self._subs.values():
                self._leaving.append(sub)
            self._subs = {}
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(15)

    # ---------------------------------------------------------------- reader thread side
    def _run(self) -> None:
        """The reader thread. Nothing ends it but `close`; an unexpected error is logged and
        reported as a fault of every subscription (each is taken over again)."""
        try:
            while not self._closing:
                try:
                    self._step()
                except Exception as exc:
                    if not isinstance(exc, AMQPError | TransientError):
                        log.exception("RabbitMQ queue reader of %s failed", self.topic)
                    self._lost(exc)
            self._finish()
        finally:
            self._disconnect()

    def _step(self) -> None:
        with self._cond:
            leaving, self._leaving = self._leaving, []
            subs = list(self._subs.items())
        for sub in leaving:
            self._leave(sub)
        live = [(p, s) for p, s in subs if not s.failed]
        if not live:
            self._disconnect()
            self._wake.wait(0.2)
            self._wake.clear()
            return
        conn = self._connect()
        if conn is None:
            return
        now = time.monotonic()
        for p, sub in live:
            if sub.channel is None:
                self._subscribe(conn, p, sub)
            elif not sub.channel.is_open:
                self._fail(p, sub, RabbitUnavailable(
                    f"RabbitMQ queue {sub.queue!r}: the broker closed the channel"))  # fmt: skip
                continue
            self._ack(sub)
            if sub.channel is not None and now >= sub.ready_at:
                self._read_ready(p, sub, now)
        self._wake.clear()
        conn.process_data_events(time_limit=0.05)

    def _connect(self) -> pika.BlockingConnection | None:
        if self._conn is not None and self._conn.is_open:
            return self._conn
        self._conn = None
        if time.monotonic() < self._retry_at:
            self._wake.wait(0.1)
            return None
        try:
            self._conn = pika.BlockingConnection(self._params)
        except AMQPError as exc:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._lost(exc)
            return None
        return self._conn

    def _subscribe(self, conn: pika.BlockingConnection, p: int, sub: _Sub) -> None:
        channel = conn.channel()
        try:
            frame = channel.queue_declare(sub.queue, passive=True)
        except ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            self._fail(p, sub, RabbitQueueMissing(
                f"RabbitMQ queue {sub.queue!r} does not exist at {self._where}: declare it "
                "(classic or quorum, durable)"))  # fmt: skip
            return
        channel.basic_qos(prefetch_count=self._prefetch)
        gone = RabbitQueueMissing(
            f"RabbitMQ queue {sub.queue!r} was deleted (the broker cancelled the consumer)"
        )
        channel.add_on_cancel_callback(lambda _frame: self._fail(p, sub, gone))
        with self._cond:
            if self._subs.get(p) is not sub:  # unassigned meanwhile: `_leave` closes it
                sub.channel = channel
                return
        channel.basic_consume(sub.queue, self._callback(p, sub))
        sub.channel = channel
        sub.ready = frame.method.message_count
        sub.ready_at = time.monotonic() + READY_EVERY
        log.info("reading RabbitMQ queue %s as %s[%d] from virtual offset %d",
                 sub.queue, self.topic, p, sub.next)  # fmt: skip

    def _callback(self, p: int, sub: _Sub) -> Any:
        topic, cond = self.topic, self._cond

        def deliver(
            _ch: BlockingChannel, method: Any, props: pika.BasicProperties, body: bytes
        ) -> None:
            ts = props.timestamp * 1000 if props.timestamp else int(time.time() * 1000)
            with cond:
                if self._subs.get(p) is not sub or sub.failed:
                    return  # leaving: unacknowledged, RabbitMQ delivers it again
                off = sub.next
                sub.next = off + 1
                sub.buf.append(InRecord(topic, p, off, _key(props), body, ts))
                sub.tags.append((off, method.delivery_tag))
                sub.ready = max(0, sub.ready - 1)
                cond.notify_all()

        return deliver

    def _ack(self, sub: _Sub) -> None:
        """Acknowledge, in one frame, every delivery numbered below the agreed checkpoint."""
        with self._cond:
            upto, last = sub.ack_to, None
            while upto is not None and sub.tags and sub.tags[0][0] < upto:
                last = sub.tags.popleft()[1]
        if last is not None and sub.channel is not None and sub.channel.is_open:
            sub.channel.basic_ack(last, multiple=True)

    def _read_ready(self, p: int, sub: _Sub, now: float) -> None:
        sub.ready_at = now + READY_EVERY
        assert sub.channel is not None
        try:
            frame = sub.channel.queue_declare(sub.queue, passive=True)
        except ChannelClosedByBroker as exc:  # this partition's channel only
            gone = exc.reply_code == 404
            fault = RabbitQueueMissing if gone else RabbitUnavailable
            self._fail(p, sub, fault(f"RabbitMQ queue {sub.queue!r}: {exc.reply_text}"))
            return
        with self._cond:
            if self._subs.get(p) is sub:
                sub.ready = frame.method.message_count

    def _leave(self, sub: _Sub) -> None:
        """Acknowledge what was agreed, then close the channel: RabbitMQ requeues the rest."""
        channel, sub.channel = sub.channel, None
        if channel is None:
            return
        with contextlib.suppress(AMQPError):
            if channel.is_open:
                sub.channel = channel
                self._ack(sub)
                channel.close()
        sub.channel = None

    def _fail(self, p: int, sub: _Sub, exc: Exception) -> None:
        with self._cond:
            if self._subs.get(p) is not sub or sub.failed:
                return
            sub.failed = True
            sub.buf.clear()
            self._faults[(self.topic, p)] = exc
        log.warning("RabbitMQ queue %s (%s[%d]): %s", sub.queue, self.topic, p, exc)

    def _lost(self, exc: Exception) -> None:
        """The connection failed: every subscription on it is lost (RabbitMQ requeues what
        it delivered unacknowledged)."""
        fault: Exception = exc
        if not isinstance(exc, TransientError):
            fault = RabbitUnavailable(f"RabbitMQ at {self._where}: {exc!r}")
        with self._cond:
            subs = list(self._subs.items())
            leaving = list(self._leaving)
        for p, sub in subs:
            sub.channel = None
            self._fail(p, sub, fault)
        for sub in leaving:
            sub.channel = None
        self._disconnect()

    def _finish(self) -> None:
        """Closing: the acknowledgements agreed before the close, then every channel."""
        with self._cond:
            leaving, self._leaving = self._leaving, []
        for sub in leaving:
            self._leave(sub)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(AMQPError):
                if conn.is_open:
                    conn.close()
