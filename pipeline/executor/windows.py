"""Tumbling and hopping windows: per-window aggregates, the watermark, lateness and closing.

Time is event time: the ``timestamp=`` function's value, or else the record's timestamp (the
Kafka timestamp, carried across repartitions). The watermark is the highest event time the
partition has seen; a window ``[start, end)`` closes, emitting one value per key in arrival
order, once the watermark reaches ``end`` plus the allowed lateness. A record that falls in a
window already closed is not added to it and counts as late. Nothing reads a clock, so a
replay closes the same windows at the same records.

State layout (partition-local, stage ``n``):

* ``s{n}:wm`` — the partition's watermark (max event time seen, ms)
* ``s{n}:wi`` — sorted starts of open windows
* ``s{n}:wk:{start}`` — keys with state in the window starting at ``start`` (arrival order)
* ``s{n}:w:{start}:{key}`` — accumulator of ``key`` in that window
"""

from __future__ import annotations

import bisect
from typing import Any

from pipeline.executor.batch import BatchRun
from pipeline.executor.columns import col_map
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.executor.stateful import Aggregation, Emit
from pipeline.job import Window, WindowSpec

__all__ = ["WatermarkWindow", "WindowedAggregate", "add_sorted", "event_time", "event_times"]


def event_time(value: Any) -> int:
    """A ``timestamp=`` function's result as epoch milliseconds, refusing what is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return int(value)
    raise TypeError(f"timestamp must be epoch milliseconds (int), got {type(value).__name__}")


def event_times(
    run: BatchRun,
    window: Window,
    where: str,
    orig: list[int],
    vals: list[Any],
    keys: list[Any],
    stamps: list[int],
) -> tuple[list[int], list[Any], list[Any], list[int]]:
    """Each value's event time (``timestamp=`` or the record's), failing the records whose
    ``timestamp`` function raised or returned no epoch milliseconds."""
    ts_fn = window.timestamp
    if ts_fn is None:
        return orig, vals, keys, [stamps[o] for o in orig]
    fn = ts_fn
    ets, errors = col_map(lambda v: event_time(fn(v)), vals)
    if errors:
        for j, exc in errors:
            run.fail(orig[j], exc, where)
        keep = [k for k, o in enumerate(orig) if o not in run.failed]
        orig = [orig[k] for k in keep]
        vals = [vals[k] for k in keep]
        keys = [keys[k] for k in keep]
        ets = [ets[k] for k in keep]
    return orig, vals, keys, ets


def add_sorted(cache: StateCache, key: str, entry: list[Any]) -> None:
    """Add ``entry`` to the sorted list at ``key`` once; in-order input (the usual case)
    appends in place instead of copying the list."""
    index = cache.get(key)
    if index is ABSENT:
        cache.put(key, [entry])
    elif entry > index[-1]:
        cache.append(key, entry)
    else:
        at = bisect.bisect_left(index, entry)
        if index[at] != entry:
            cache.put(key, [*index[:at], entry, *index[at:]])


class WatermarkWindow:
    """What every window kind shares: the watermark ``s{n}:wm`` (the highest event time
    seen), moved by records (:meth:`raise_to`) or by an idle tick (:meth:`advance`), each
    time closing what it completes (the kind's ``_close``)."""

    __slots__ = ("agg", "emit", "label", "lateness", "prefix", "window")

    def __init__(
        self, stage: int, window: Window, label: str, agg: Aggregation, emit: Emit
    ) -> None:
        self.prefix = f"s{stage}:"
        self.window = window
        self.lateness = window.allowed_lateness_ms
        self.label = label
        self.agg = agg
        self.emit = emit

    def prepare(
        self,
        run: BatchRun,
        cache: StateCache,
        orig: list[int],
        vals: list[Any],
        keys: list[Any],
        stamps: list[int],
    ) -> tuple[list[int], list[Any], list[Any], list[int]]:
        """Event times, then the batch's state in one read (the kind's :meth:`_state_keys`)."""
        orig, vals, keys, ets = event_times(run, self.window, self.label, orig, vals, keys, stamps)
        cache.load(self._state_keys(keys, ets))
        return orig, vals, keys, ets

    def _state_keys(self, keys: list[Any], ets: list[int]) -> list[str]:
        raise NotImplementedError

    def _close(self, run: BatchRun, cache: StateCache, wm: int) -> None:
        raise NotImplementedError

    def raise_to(self, run: BatchRun, cache: StateCache, wm: Any, high: Any) -> None:
        """After a record's values: ``high`` (the highest event time among them and ``wm``,
        the watermark before) becomes the watermark if it moved, and closes what is due."""
        if high is ABSENT or (wm is not ABSENT and high <= wm):
            return
        cache.put(self.prefix + "wm", high)
        self._close(run, cache, high)

    def advance(self, run: BatchRun, cache: StateCache, to: int) -> None:
        """An idle tick (executor/ticks.py): move the watermark to ``to`` and close."""
        wm = cache.get(self.prefix + "wm")
        if wm is ABSENT or to <= wm:
            return  # no record yet (nothing open), or nothing new
        self.raise_to(run, cache, wm, to)


class WindowedAggregate(WatermarkWindow):
    """One aggregate per key and window, emitted when the window closes."""

    __slots__ = ()

    def _state_keys(self, keys: list[Any], ets: list[int]) -> list[str]:
        window = self.window
        p = self.prefix
        wanted = [p + "wm", p + "wi"]
        assert isinstance(window.spec, WindowSpec)
        starts_of = window.spec.starts
        for k, t in zip(keys, ets, strict=True):
            for s in starts_of(t):
                wanted.append(f"{p}wk:{s}")
                wanted.append(f"{p}w:{s}:{k}")
        return wanted

    def update(
        self,
        run: BatchRun,
        cache: StateCache,
        keys: list[Any],
        vals: list[Any],
        ets: list[int],
        i: int,
        j: int,
    ) -> None:
        window = self.window
        agg = self.agg
        spec = window.spec
        assert isinstance(spec, WindowSpec)
        size = spec.size_ms
        lateness = window.allowed_lateness_ms
        p = self.prefix
        wm_key, wi_key = p + "wm", p + "wi"
        wm = cache.get(wm_key)
        high = wm
        for e in range(i, j):
            key, value, t = keys[e], vals[e], ets[e]
            late = False
            for start in spec.starts(t):
                if wm is not ABSENT and wm >= start + size + lateness:
                    late = True
                    continue
                ak = f"{p}w:{start}:{key}"
                acc = cache.get(ak)
                if acc is ABSENT:
                    new = agg.fresh(value)
                    kl_key = f"{p}wk:{start}"
                    if cache.get(kl_key) is ABSENT:
                        cache.put(kl_key, [key])
                        index = cache.get(wi_key)
                        opened = [] if index is ABSENT else index
                        cache.put(wi_key, sorted([*opened, start]))
                    else:
                        cache.append(kl_key, key)
                else:
                    new = agg.step(acc, value)
                cache.put(ak, new)
            if late:
                run.late += 1
            if high is ABSENT or t > high:
                high = t
        self.raise_to(run, cache, wm, high)

    def timers(self, cache: StateCache) -> tuple[int | None, int | None]:
        """The watermark and the watermark at which the next window closes."""
        p = self.prefix
        wm, index = cache.get(p + "wm"), cache.get(p + "wi")
        window = self.window
        assert isinstance(window.spec, WindowSpec)
        close = (
            None if index is ABSENT else index[0] + window.spec.size_ms + window.allowed_lateness_ms
        )
        return (None if wm is ABSENT else wm), close

    def _close(self, run: BatchRun, cache: StateCache, high: int) -> None:
        p = self.prefix
        wi_key = p + "wi"
        window = self.window
        assert isinstance(window.spec, WindowSpec)
        size = window.spec.size_ms
        lateness = window.allowed_lateness_ms
        index = cache.get(wi_key)
        if index is ABSENT:
            return
        closed = 0
        for start in index:
            end = start + size
            if high < end + lateness:
                break
            closed += 1
            kl_key = f"{p}wk:{start}"
            wkeys = list(cache.get(kl_key))
            cache.load([f"{p}w:{start}:{k}" for k in wkeys])
            for k in wkeys:
                ak = f"{p}w:{start}:{k}"
                acc = cache.get(ak)
                emission = {"key": k, "window_start": start, "window_end": end, "value": acc}
                cache.put(ak, ABSENT)
                self.emit(run, k, emission, end - 1)
            cache.put(kl_key, ABSENT)
        if closed:
            rest = index[closed:]
            cache.put(wi_key, rest if rest else ABSENT)
