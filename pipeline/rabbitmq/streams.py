"""Reading RabbitMQ streams for a job's first stage (issue 19; docs/architecture.md, "RabbitMQ
sources").

A stream is offset-addressed like a Kafka partition, so a stream source plugs into the worker
as one more record source: the job's stage 0 is keyed by an empty Kafka *anchor* topic
(`paxline.{job}.rabbitmq.{stream}`), partition p of which stands for stream p. Everything
that decides where to resume is unchanged - the coordinators agree the offsets, exactly-once
commits them in the Kafka transaction under the anchor topic (`send_offsets_to_transaction`
accepts any existing topic), takeover reconciles K, A and R - and only the records come from
RabbitMQ: `assign((topic, p, offset))` subscribes to the stream at that offset. RabbitMQ's own
stored offsets are never used, the checkpoint is the truth.

rstream is asyncio; the worker is threads. The reader runs one event loop on its own thread;
deliveries go to a per-partition buffer that `poll_batch` drains. A full buffer holds the
delivery callback (and so the credit flow: the broker sends no more chunks). A lost connection
or a stream that does not exist yet is retried every second from the next offset not yet
delivered; the partition meanwhile simply gets no records, like a Kafka partition whose broker
is away, and shows `stalled_reason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from rstream import (
    AMQPMessage,
    ConfirmationStatus,
    Consumer,
    ConsumerOffsetSpecification,
    MessageContext,
    OffsetType,
    Producer,
    amqp_decoder,
)

from pipeline.executor.records import InRecord
from pipeline.rabbitmq.buffered import BufferedPartitions

__all__ = ["StreamReader", "StreamTarget", "publish", "stream_target"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class StreamTarget:
    host: str
    port: int
    username: str
    password: str
    vhost: str


def stream_target(url: str) -> StreamTarget:
    """`rabbitmq-stream://user:password@host:port/vhost` (the job builder validated it)."""
    u = urlsplit(url)
    vhost = unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return StreamTarget(u.hostname or "localhost", u.port or 5552, unquote(u.username or "guest"),
                        unquote(u.password or "guest"), vhost)  # fmt: skip


@dataclass
class _Sub:
    """One assigned partition: its stream, the next offset to deliver (None: the stream's
    first), delivered records not yet polled, and the rstream subscription serving it."""

    stream: str
    generation: int
    next: int | None
    buf: deque[InRecord] = field(default_factory=deque)
    sub_id: int | None = None
    error: str = ""
    retry_at: float = 0.0


def _key(msg: AMQPMessage) -> bytes | None:
    props = msg.application_properties or {}
    k = props.get(b"key", props.get("key"))
    if k is None:
        return None
    return k if isinstance(k, bytes) else str(k).encode()


def _body(msg: AMQPMessage) -> bytes | None:
    body: Any = msg.body
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, list):  # several data sections
        return b"".join(bytes(b) for b in body)
    return str(body).encode()


class StreamReader(BufferedPartitions):
    """The records of `topic`'s partitions, read from RabbitMQ streams (see module doc).
    Same surface as the Kafka `Source` for the part the worker uses on a stage's input."""

    def __init__(
        self, topic: str, streams: dict[int, str], url: str, max_buffered: int = 20_000
    ) -> None:
        self.topic = topic
        self._streams = streams
        self._target = stream_target(url)
        self._max = max_buffered
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()
        self._subs: dict[int, _Sub] = {}
        self._generation = 0
        self._drop_ids: list[int] = []
        self._cond = threading.Condition()
        self._closing = False
        self._consumer: Consumer | None = None
        self._loop = asyncio.new_event_loop()
        self._wake: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"rabbitmq-{topic}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- worker thread side
    def assign(self, partitions: list[tuple[str, int, int | None]]) -> None:
        with self._cond:
            for topic, p, offset in partitions:
                old = self._subs.pop(p, None)
                if old is not None and old.sub_id is not None:
                    self._drop_ids.append(old.sub_id)
                self._generation += 1
                stream = self._streams[p]
                self._subs[p] = _Sub(stream, self._generation, offset)
                self.assigned.add((topic, p))
        self._poke()

    def unassign(self, partitions: list[TP]) -> None:
        with self._cond:
            for topic, p in partitions:
                if (topic, p) not in self.assigned:
                    continue
                self.assigned.discard((topic, p))
                self.paused.discard((topic, p))
                old = self._subs.pop(p, None)
                if old is not None and old.sub_id is not None:
                    self._drop_ids.append(old.sub_id)
            self._cond.notify_all()
        self._poke()

    def high_watermarks(self, partitions: list[TP]) -> dict[TP, int]:
        """The offset after the last delivered record (RabbitMQ 3.10 has no stream-stats
        request, so the lag shown counts delivered, unprocessed records only)."""
        return self.positions(partitions)

    def positions(self, partitions: list[TP]) -> dict[TP, int]:
        with self._cond:
            subs = {p: s.next for p, s in self._subs.items()}
        return {(t, p): n for t, p in partitions if (n := subs.get(p)) is not None}

    def stalled_reason(self, partition: int) -> str:
        """Why a partition gets no records right now ("" if nothing is wrong)."""
        with self._cond:
            sub = self._subs.get(partition)
            return sub.error if sub is not None else ""

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        with contextlib.suppress(RuntimeError):  # loop already gone
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)

    def _poke(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    # -------------------------------------------------------------------- event loop side
    def _run(self) -> None:
        """The reader's loop thread. Nothing ends it but `close`: an unexpected error in the
        loop (a client bug, a broker answer it does not expect) is logged, the connection is
        dropped and the loop starts again, so the partitions resume instead of stalling for
        good behind a dead thread."""
        asyncio.set_event_loop(self._loop)
        self._wake = asyncio.Event()
        try:
            while not self._closing:
                try:
                    self._loop.run_until_complete(self._manage())
                except Exception:
                    log.exception("RabbitMQ stream reader of %s failed; restarting", self.topic)
                    self._loop.run_until_complete(self._reset())
                    self._loop.run_until_complete(asyncio.sleep(RETRY_SECONDS))
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _manage(self) -> None:
        """Keep every assigned partition subscribed at its next offset; drop what moved."""
        assert self._wake is not None
        while not self._closing:
            with self._cond:
                drop, self._drop_ids = self._drop_ids, []
                todo = [(p, s) for p, s in self._subs.items() if s.sub_id is None]
            consumer = self._consumer
            for sub_id in drop:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(consumer.unsubscribe(sub_id), 5)
            now = time.monotonic()
            for p, sub in todo:
                if now >= sub.retry_at:
                    await self._subscribe(p, sub)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.2)
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.close(), 5)
            self._consumer = None

    async def _subscribe(self, p: int, sub: _Sub) -> None:
        spec = (
            ConsumerOffsetSpecification(OffsetType.FIRST, None)
            if sub.next is None
            else ConsumerOffsetSpecification(OffsetType.OFFSET, sub.next)
        )
        try:
            consumer = await self._connect()
            sub_id = await asyncio.wait_for(
                consumer.subscribe(sub.stream, self._callback(p, sub.generation),
                                   decoder=amqp_decoder, offset_specification=spec,
                                   initial_credit=2),
                10,
            )  # fmt: skip
        except Exception as exc:  # connection refused, stream missing, timeout: retry later
            reason = f"RabbitMQ stream {sub.stream!r}: {type(exc).__name__}: {exc}"
            if reason != sub.error:
                log.warning("cannot read %s; retrying every %.0fs", reason, RETRY_SECONDS)
            sub.error, sub.retry_at = reason, time.monotonic() + RETRY_SECONDS
            if not isinstance(exc, asyncio.TimeoutError) and "does not exist" not in str(exc):
                await self._reset()
            return
        with self._cond:
            current = self._subs.get(p) is sub
            if current:
                sub.sub_id, sub.error = sub_id, ""
        if not current:  # unassigned while subscribing
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.unsubscribe(sub_id), 5)
        else:
            log.info("reading RabbitMQ stream %s from offset %s", sub.stream, sub.next or "first")

    async def _connect(self) -> Consumer:
        if self._consumer is None:
            t = self._target
            consumer = Consumer(t.host, t.port, username=t.username, password=t.password,
                                vhost=t.vhost, connection_name="paxline-worker",
                                on_close_handler=self._on_close)  # fmt: skip
            await asyncio.wait_for(consumer.start(), 10)
            self._consumer = consumer
        return self._consumer

    async def _on_close(self, info: Any) -> None:
        log.warning("RabbitMQ stream connection closed (%s); reconnecting", info.reason)
        asyncio.get_running_loop().create_task(self._reset())

    async def _reset(self) -> None:
        """Forget the connection and every subscription; `_manage` subscribes them again from
        their next offsets (what was delivered stays buffered, nothing is skipped)."""
        consumer, self._consumer = self._consumer, None
        with self._cond:
            for sub in self._subs.values():
                sub.sub_id = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.close(), 5)

    def _callback(self, p: int, generation: int) -> Any:
        topic, cond, limit = self.topic, self._cond, self._max

        async def deliver(msg: AMQPMessage, ctx: MessageContext) -> None:
            with cond:
                sub = self._subs.get(p)
                if sub is None or sub.generation != generation:
                    return  # a subscription of a partition since moved
                if sub.next is not None and ctx.offset < sub.next:
                    return  # a chunk starts before the offset asked for
                sub.buf.append(InRecord(topic, p, ctx.offset, _key(msg), _body(msg),
                                        ctx.timestamp))  # fmt: skip
                sub.next = ctx.offset + 1
                cond.notify_all()
                full = len(sub.buf) >= limit
            while full and not self._closing:  # hold the delivery: no credit, no new chunks
                await asyncio.sleep(0.01)
                with cond:
                    sub = self._subs.get(p)
                    full = (sub is not None and sub.generation == generation
                            and len(sub.buf) >= limit)  # fmt: skip

        return deliver


def publish(url: str, stream: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    """Create `stream` if needed and append `values`, returning once the broker confirmed
    every message (examples and tests feed streams with it)."""
    t = stream_target(url)

    async def run() -> None:
        confirmed = [0]
        failed: list[str] = []

        async def on_confirm(status: ConfirmationStatus) -> None:
            confirmed[0] += 1
            if not status.is_confirmed:
                failed.append(f"message {status.message_id}: code {status.response_code}")

        async with Producer(t.host, t.port, username=t.username, password=t.password,
                            vhost=t.vhost) as producer:  # fmt: skip
            await producer.create_stream(stream, exists_ok=True)
            msgs = [
                AMQPMessage(body=v, application_properties={"key": keys[i]} if keys else None)
                for i, v in enumerate(values)
            ]
            for i in range(0, len(msgs), 500):
                await producer.send_batch(stream, msgs[i : i + 500], on_publish_confirm=on_confirm)
            deadline = time.monotonic() + 60
            while confirmed[0] < len(msgs) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if failed or confirmed[0] < len(msgs):
            raise RuntimeError(f"stream {stream!r}: {confirmed[0]} of {len(msgs)} confirmed; "
                               f"refused: {failed[:3]}")  # fmt: skip

    asyncio.run(run())
