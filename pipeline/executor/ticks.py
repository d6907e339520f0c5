"""Idle timers: a quiet partition's watermark advances with the wall clock (issue 18).

A window closes when its partition's watermark (max event time seen) passes its end, so the
last window of a partition that goes quiet would wait for the next record. With a window's
``idle_timeout``, once a windowed partition has had no record for that long, its watermark
follows the wall clock from where the last record left it::

    watermark = watermark at the last record + (wall now - wall time of the last record)

and windows close as that reaches them.

The executor stays pure and replayable because the advance travels as a record: the worker
appends a *tick* to the stage's own input partition (a repartition topic - windows always
follow a ``key_by``), a record with header ``paxline.tick`` holding the new watermark in
decimal ms and no key or value. The stage applies it in offset order like any record, so its
state writes and emissions ride the guarantee's commit protocol unchanged (exactly-once: the
same Redis step and Kafka transaction as the records around it, covered by the offset), and a
replay after a crash sees the same tick at the same place. Ticks are idempotent (the
watermark is a max), so one produced twice or lost costs nothing: the next is sent one
timeout later. Ticks are produced without a transaction (visible at once to read_committed).

:class:`IdleTimers` decides when to send one: pure, the worker passes the monotonic clock in.
It learns each partition's watermark and next closing from :class:`BatchResult` (``watermark``
and ``next_close``), and sends a tick only when the wall-clock watermark reaches the next
closing, so a partition with no open window costs nothing. After a takeover it knows neither
until a batch arrives: if none does within the timeout it sends a *probe* tick (no advance)
whose result tells it, and counts the quiet time from then (a window of a partition taken
over while quiet closes up to one timeout later than it would have).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.executor.records import BatchResult, InRecord

__all__ = ["PROBE", "TICK_HEADER", "IdleTimers", "Tick", "tick_of"]

TICK_HEADER = "paxline.tick"
PROBE = -(2**62)  # a tick that advances nothing: asks the stage for its watermark

Key = tuple[str, str, int]  # (job, topic, partition)


def tick_of(record: InRecord) -> int | None:
    """The watermark a tick record carries, or None if ``record`` is data."""
    headers = record.headers
    if headers and headers[0][0] == TICK_HEADER:
        try:
            return int(headers[0][1])
        except ValueError:
            return None  # a damaged tick advances nothing; it is still not data
    return None


def is_tick(record: InRecord) -> bool:
    headers = record.headers
    return bool(headers) and headers[0][0] == TICK_HEADER


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick to append to ``topic[partition]``."""

    topic: str
    partition: int
    watermark: int

    @property
    def value(self) -> bytes:
        return b""

    @property
    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [(TICK_HEADER, str(self.watermark).encode())]


@dataclass(slots=True)
class _Clock:
    last: float  # monotonic seconds of the last data record (or of the takeover / probe)
    timeout_ms: int = 0
    base_wm: int | None = None  # the watermark after that record
    next_close: int | None = None  # watermark at which the next window closes
    known: bool = False  # a batch (data or probe) has told us base_wm/next_close
    sent_at: float | None = None  # the last tick, while its result has not come back


class IdleTimers:
    """When each idle windowed partition needs a tick (see the module doc)."""

    __slots__ = ("_clocks",)

    def __init__(self) -> None:
        self._clocks: dict[Key, _Clock] = {}

    def observe(self, key: Key, records: Sequence[InRecord], res: BatchResult, now: float) -> None:
        """A batch of ``records`` (not empty) of ``key``'s stage ran at ``now``; ``res``
        carries the stage's watermark and next closing (None for a stage without windows)."""
        c = self._clocks.get(key)
        if c is None:
            if res.watermark is None and res.next_close is None:
                return  # not windowed, or no state yet: `due` registers it
            c = self._clocks[key] = _Clock(now)
        if not records:
            return
        data = any(not is_tick(r) for r in records)
        if data or not c.known:
            c.last = now
            c.base_wm = res.watermark
        c.known = True
        c.next_close = res.next_close
        if not data:
            c.sent_at = None  # our tick came back (or someone's: either answers it)

    def due(self, now: float, partitions: Iterable[tuple[Key, int | None]]) -> list[Tick]:
        """Ticks to send now, for the owned ``partitions`` with their idle timeout (ms)."""
        clocks = self._clocks
        seen: set[Key] = set()
        out: list[Tick] = []
        for key, timeout_ms in partitions:
            if timeout_ms is None:
                continue
            seen.add(key)
            c = clocks.get(key)
            if c is None:
                clocks[key] = _Clock(now, timeout_ms)
                continue
            c.timeout_ms = timeout_ms
            elapsed_ms = int((now - c.last) * 1000)
            if elapsed_ms < c.timeout_ms:
                continue
            if c.sent_at is not None and (now - c.sent_at) * 1000 < c.timeout_ms:
                continue  # the previous tick is still on its way
            if not c.known:
                wm = PROBE
            elif c.next_close is None or c.base_wm is None:
                continue
            else:
                wm = c.base_wm + elapsed_ms
                if wm < c.next_close:
                    continue
            c.sent_at = now
            out.append(Tick(key[1], key[2], wm))
        for key in [k for k in clocks if k not in seen]:
            del clocks[key]  # released: a later takeover starts afresh
        return out
