"""Session windows (issue 18): per key, records less than ``gap`` apart in event time form
one window ``[first, last + gap)``, emitted once when the watermark reaches its end plus the
allowed lateness. A record that bridges two open sessions merges them.

Values are folded in event-time order (ties in arrival order), so a session's result does not
depend on how records were batched or interleaved across keys. Without a merge function for
accumulators, a session keeps its values so that an out-of-order record or a merge can fold
them again; the usual in-order record just folds one step (and an aggregation function that
fails does so on the record that brought the value, which is dead-lettered).

A record is late, counted and dropped, when it joins no open session and its own session
``[t, t + gap)`` would already be closed (watermark >= t + gap + allowed lateness).

State layout (partition-local, stage ``n``), next to the watermark ``s{n}:wm`` that every
window kind keeps:

* ``s{n}:sx`` — sorted ``[end, key]`` of every open session (what to close next), and of
  sessions that grew or merged since (stale entries, skipped when they come due: in-order
  input then appends in place instead of rewriting the list)
* ``s{n}:ss:{key}`` — the key's open sessions, sorted: ``[start, last, acc, [[t, value]...]]``
"""

from __future__ import annotations

import bisect
from typing import Any

from pipeline.executor.batch import BatchRun
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.executor.stateful import Aggregation, Emit, norm
from pipeline.executor.windows import WatermarkWindow, add_sorted
from pipeline.job import SessionSpec, Window

__all__ = ["SessionAggregate"]


class SessionAggregate(WatermarkWindow):
    """One aggregate per key and session, emitted when the session closes."""

    __slots__ = ("gap",)

    def __init__(
        self, stage: int, window: Window, label: str, agg: Aggregation, emit: Emit
    ) -> None:
        assert isinstance(window.spec, SessionSpec)
        super().__init__(stage, window, label, agg, emit)
        self.gap = window.spec.gap_ms

    def _state_keys(self, keys: list[Any], ets: list[int]) -> list[str]:
        p = self.prefix
        return [p + "wm", p + "sx", *(f"{p}ss:{k}" for k in keys)]

    def _fold(self, values: list[list[Any]]) -> Any:
        agg = self.agg
        acc = agg.fresh(values[0][1])
        for _, v in values[1:]:
            acc = agg.step(acc, v)
        return acc

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
        gap, lateness = self.gap, self.lateness
        wm_key, sx_key = p + "wm", p + "sx"
        wm = cache.get(wm_key)
        high = wm
        for e in range(i, j):
            key, t = keys[e], ets[e]
            value = norm(vals[e])  # kept in state: as it will read back (and encodable)
            if high is ABSENT or t > high:
                high = t
            sk = f"{p}ss:{key}"
            sessions = cache.get(sk)
            if sessions is ABSENT:
                sessions = []
            touching = [s for s in sessions if s[0] - gap < t < s[1] + gap]
            if not touching and wm is not ABSENT and wm >= t + gap + lateness:
                run.late += 1
                continue
            if not touching:
                merged = [t, t, self.agg.fresh(value), [[t, value]]]
            elif len(touching) == 1 and t >= touching[0][1]:
                s = touching[0]  # the usual case: the next record of a running session
                merged = [s[0], t, self.agg.step(s[2], value), [*s[3], [t, value]]]
            else:
                values = sorted(
                    (tv for s in touching for tv in s[3]), key=lambda tv: tv[0]
                )  # stable: arrival order within a time; sessions hold disjoint times
                at = bisect.bisect_right([tv[0] for tv in values], t)
                values.insert(at, [t, value])
                start = min(t, touching[0][0])
                last = max(t, touching[-1][1])
                merged = [start, last, self._fold(values), values]
            rest = [s for s in sessions if s not in touching]
            bisect.insort(rest, merged, key=lambda s: s[0])
            cache.put(sk, rest)
            # The entries of the sessions it replaced stay, stale: closing skips them.
            add_sorted(cache, sx_key, [merged[1] + gap, key])
        self.raise_to(run, cache, wm, high)

    def timers(self, cache: StateCache) -> tuple[int | None, int | None]:
        p = self.prefix
        wm, index = cache.get(p + "wm"), cache.get(p + "sx")
        close = None
        for end, key in [] if index is ABSENT else index:
            sessions = cache.get(f"{p}ss:{key}")
            if sessions is not ABSENT and any(s[1] + self.gap == end for s in sessions):
                close = end + self.lateness  # the first entry that is not stale
                break
        return (None if wm is ABSENT else wm), close

    def _close(self, run: BatchRun, cache: StateCache, wm: int) -> None:
        p = self.prefix
        sx_key = p + "sx"
        index = cache.get(sx_key)
        if index is ABSENT:
            return
        due = 0
        while due < len(index) and index[due][0] + self.lateness <= wm:
            due += 1
        if not due:
            return
        cache.load([f"{p}ss:{key}" for _, key in index[:due]])
        for end, key in index[:due]:
            sk = f"{p}ss:{key}"
            sessions = cache.get(sk)
            done = None
            if sessions is not ABSENT:
                done = next((s for s in sessions if s[1] + self.gap == end), None)
            if done is None:
                continue  # stale: that session grew or merged since, or closed already
            rest = [s for s in sessions if s is not done]
            cache.put(sk, rest if rest else ABSENT)
            emission = {"key": key, "window_start": done[0], "window_end": end, "value": done[2]}
            self.emit(run, key, emission, end - 1)
        rest_index = index[due:]
        cache.put(sx_key, rest_index if rest_index else ABSENT)
