"""Sliding windows (issue 18): each record at event time ``t`` ends a window ``[t - size, t]``
(both ends inclusive) over its key's records; records of a key with equal times share one
window. The window is emitted once, when the watermark passes ``t`` plus the allowed lateness
(watermark >= t + 1 + lateness), as ``{"key", "window_start": t - size, "window_end": t,
"value"}``: so every record of the window, including ones arriving out of order within the
lateness, is in it.

Values are folded in event-time order (ties in arrival order). A record whose own window is
already closed is counted late and opens no window, but still joins the later windows that
are open and cover it.

State layout (partition-local, stage ``n``), next to the watermark ``s{n}:wm``:

* ``s{n}:lx`` — sorted ``[t, key, kind]`` of pending work: kind 0 closes the window ending at
  ``t``; kind 1 drops the key's values once no future window can reach them
* ``s{n}:lv:{key}`` — the key's values ``[[t, value]...]`` in event-time order
"""

from __future__ import annotations

import bisect
from typing import Any

from pipeline.executor.batch import BatchRun
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.executor.stateful import Aggregation, Emit, norm
from pipeline.executor.windows import WatermarkWindow, add_sorted
from pipeline.job import SlidingSpec, Window

__all__ = ["SlidingAggregate"]

_CLOSE, _DROP = 0, 1


class SlidingAggregate(WatermarkWindow):
    """One aggregate per key and record time, emitted when that time is complete."""

    __slots__ = ("size",)

    def __init__(
        self, stage: int, window: Window, label: str, agg: Aggregation, emit: Emit
    ) -> None:
        assert isinstance(window.spec, SlidingSpec)
        super().__init__(stage, window, label, agg, emit)
        self.size = window.spec.size_ms

    def _state_keys(self, keys: list[Any], ets: list[int]) -> list[str]:
        p = self.prefix
        return [p + "wm", p + "lx", *(f"{p}lv:{k}" for k in keys)]

    def _horizon(self, wm: int) -> int:
        """Values older than this can be in no window that is open or still to come."""
        return wm - self.lateness - self.size

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
        p = self.prefix
        wm_key, lx_key = p + "wm", p + "lx"
        wm = cache.get(wm_key)
        high = wm
        for e in range(i, j):
            key, t = keys[e], ets[e]
            if high is ABSENT or t > high:
                high = t
            if wm is not ABSENT and t < self._horizon(wm):
                run.late += 1
                continue  # in no open window at all
            value = norm(vals[e])
            self.agg.fresh(value)  # fails here, on its own record, rather than at closing
            vk = f"{p}lv:{key}"
            values = cache.get(vk)
            values = [] if values is ABSENT else list(values)
            at = bisect.bisect_right([tv[0] for tv in values], t)
            values.insert(at, [t, value])
            cache.put(vk, values)
            entry = [t, key, _CLOSE]
            if wm is not ABSENT and wm >= t + 1 + self.lateness:
                run.late += 1  # its own window is closed; later open ones include it
                entry = [t + self.size, key, _DROP]  # and drop it when they are closed too
            add_sorted(cache, lx_key, entry)
        self.raise_to(run, cache, wm, high)

    def timers(self, cache: StateCache) -> tuple[int | None, int | None]:
        p = self.prefix
        wm, index = cache.get(p + "wm"), cache.get(p + "lx")
        close = None
        if index is not ABSENT and index:
            close = index[0][0] + 1 + self.lateness
        return (None if wm is ABSENT else wm), close

    def _close(self, run: BatchRun, cache: StateCache, wm: int) -> None:
        p = self.prefix
        lx_key = p + "lx"
        index = cache.get(lx_key)
        if index is ABSENT:
            return
        due = 0
        while due < len(index) and index[due][0] + 1 + self.lateness <= wm:
            due += 1
        if not due:
            return
        cache.load([f"{p}lv:{key}" for _, key, _ in index[:due]])
        rest = index[due:]
        horizon = self._horizon(wm)
        size = self.size
        agg = self.agg
        touched: list[str] = []
        for t, key, kind in index[:due]:
            vk = f"{p}lv:{key}"
            values = cache.get(vk)
            if values is ABSENT:
                continue
            if kind == _CLOSE:
                inside = [v for ts, v in values if t - size <= ts <= t]
                acc = agg.fresh(inside[0])
                for v in inside[1:]:
                    acc = agg.step(acc, v)
                emission = {"key": key, "window_start": t - size, "window_end": t, "value": acc}
                self.emit(run, key, emission, t)
            if key not in touched:
                touched.append(key)
        for key in touched:
            vk = f"{p}lv:{key}"
            values = cache.get(vk)
            if values is ABSENT:
                continue
            kept = [tv for tv in values if tv[0] >= horizon]
            if not kept:
                cache.put(vk, ABSENT)
                continue
            if len(kept) != len(values):
                cache.put(vk, kept)
            # A value's own window is open iff t + 1 + lateness > wm (a value that came late
            # has none). With none open, drop the key's values once no window can reach them.
            if kept[-1][0] + 1 + self.lateness <= wm:
                bisect.insort(rest, [kept[-1][0] + size, key, _DROP])
        cache.put(lx_key, rest if rest else ABSENT)
