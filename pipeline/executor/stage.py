"""One stage of a job compiled into a batch function: decode, stateless operators, then either
the output directly or an aggregation (plain or windowed) whose emissions reach the output.

A stage is the run of operators between two repartitions; :mod:`pipeline.spec` decides where
they fall. The pieces are built once per job here, and nothing per batch is kept on them
(see :class:`~pipeline.executor.batch.BatchRun`).
"""

from __future__ import annotations

from typing import Any

from pipeline.executor.batch import BatchRun
from pipeline.executor.encoding import Input, Output
from pipeline.executor.joins import StreamJoin, TableJoin
from pipeline.executor.records import BatchResult, InRecord, StateAccess, StateAccessError
from pipeline.executor.sessions import SessionAggregate
from pipeline.executor.sliding import SlidingAggregate
from pipeline.executor.state_cache import StateCache
from pipeline.executor.stateful import Aggregation, KeyedAggregate, Update, apply_records
from pipeline.executor.stateless import StatelessOp, apply_columns, apply_one, as_stateless
from pipeline.executor.ticks import is_tick, tick_of
from pipeline.executor.windows import WindowedAggregate
from pipeline.job import (
    Aggregate,
    Count,
    Job,
    JoinStream,
    JoinTable,
    Reduce,
    SessionSpec,
    SlidingSpec,
    Window,
)
from pipeline.spec import StagePlan, label

__all__ = ["StageRunner", "Windowed"]

Windowed = WindowedAggregate | SessionAggregate | SlidingAggregate


class StageRunner:
    __slots__ = (
        "agg_label",
        "input",
        "join",
        "output",
        "post",
        "pre",
        "update",
        "window_label",
        "windowed",
    )

    def __init__(self, job: Job, plan: StagePlan) -> None:
        self.input = Input(job, plan)
        self.pre: list[StatelessOp] = []  # before the aggregation, or all if there is none
        self.post: list[StatelessOp] = []  # after the aggregation, on each emission
        window: Window | None = None
        window_label = ""
        agg: Aggregation | None = None
        self.join: TableJoin | StreamJoin | None = None  # a join (executor/joins.py)
        for i, op in plan.operators:
            stateless = as_stateless(i, op)
            if stateless is not None:
                (self.pre if agg is None and self.join is None else self.post).append(stateless)
            elif isinstance(op, JoinTable):
                self.join = TableJoin(plan.index, op, label(i, op), self._emit)
            elif isinstance(op, JoinStream):
                self.join = StreamJoin(plan.index, op, label(i, op), self._emit)
            elif isinstance(op, Window):
                window, window_label = op, label(i, op)
            elif isinstance(op, Count | Reduce | Aggregate):
                agg = Aggregation(op, label(i, op))
        self.output = Output.of(job, plan)
        self.update: Update | None = None  # None: a stateless stage
        self.windowed: Windowed | None = None
        self.window_label = window_label
        self.agg_label = ""
        if agg is not None:
            self.agg_label = agg.label
            if window is not None:
                kind = (
                    SessionAggregate
                    if isinstance(window.spec, SessionSpec)
                    else SlidingAggregate
                    if isinstance(window.spec, SlidingSpec)
                    else WindowedAggregate
                )
                self.windowed = kind(plan.index, window, window_label, agg, self._emit)
                self.update = self.windowed
            else:
                self.update = KeyedAggregate(plan.index, agg, self._emit)
        elif self.join is not None:
            self.update = self.join
            self.agg_label = self.join.label

    def process(self, records: list[InRecord], state: StateAccess) -> BatchResult:
        windowed = self.windowed
        if windowed is not None and any(map(is_tick, records)):
            return self._with_ticks(windowed, records, StateCache(state))
        run = BatchRun(records)
        orig, vals, keys, stamps = self.input.decode(run)
        orig, vals = apply_columns(run, self.pre, orig, vals)
        update = self.update
        if update is None:
            self.output.columns(run, orig, vals, keys, stamps)
            return BatchResult(run.outputs, run.dead, {}, dict(run.views), 0)
        cache = StateCache(state)
        if self.join is not None:
            vals = self.join.mark(run, orig, vals)
        apply_records(run, cache, update, self.agg_label, orig, vals, keys, stamps)
        res = BatchResult(run.outputs, run.dead, cache.writes(), dict(run.views), run.late)
        if windowed is not None:
            res.watermark, res.next_close = windowed.timers(cache)
        return res

    def _with_ticks(
        self, windowed: Windowed, records: list[InRecord], cache: StateCache
    ) -> BatchResult:
        """A batch holding idle ticks (executor/ticks.py): records between ticks run as usual,
        and each tick advances the watermark at its place in offset order."""
        res = BatchResult()
        views: dict[str, bytes | None] = {}

        def take(run: BatchRun) -> None:
            res.outputs += run.outputs
            res.dead_letters += run.dead
            views.update(run.views)
            res.late_dropped += run.late

        segment: list[InRecord] = []
        for r in [*records, None]:
            if r is not None and not is_tick(r):
                segment.append(r)
                continue
            if segment:
                run = BatchRun(segment)
                orig, vals, keys, stamps = self.input.decode(run)
                orig, vals = apply_columns(run, self.pre, orig, vals)
                apply_records(run, cache, windowed, self.agg_label, orig, vals, keys, stamps)
                take(run)
                segment = []
            if r is None:
                break
            to = tick_of(r)
            if to is None:
                continue
            run = BatchRun([r])
            mark = len(cache.journal)
            try:
                windowed.advance(run, cache, to)
            except StateAccessError:
                raise
            except Exception as exc:  # an emission failed: the tick names the operator
                cache.rollback(mark)
                run.outputs, run.views = [], []
                run.fail(0, exc, getattr(exc, "__paxline_where__", self.agg_label))
            del cache.journal[:]
            take(run)
        res.state_writes = cache.writes()
        res.view_writes = views
        res.watermark, res.next_close = windowed.timers(cache)
        return res

    def _emit(self, run: BatchRun, key: str, value: Any, ts: int) -> None:
        self.output.one(run, key, apply_one(self.post, value), ts)
