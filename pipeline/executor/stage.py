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
from pipeline.executor.records import BatchResult, InRecord, StateAccess
from pipeline.executor.state_cache import StateCache
from pipeline.executor.stateful import Aggregation, KeyedAggregate, Update, apply_records
from pipeline.executor.stateless import StatelessOp, apply_columns, apply_one, as_stateless
from pipeline.executor.windows import WindowedAggregate
from pipeline.job import Aggregate, Count, Job, Reduce, Window
from pipeline.spec import StagePlan, label

__all__ = ["StageRunner"]


class StageRunner:
    __slots__ = ("agg_label", "input", "output", "post", "pre", "update")

    def __init__(self, job: Job, plan: StagePlan) -> None:
        self.input = Input(job, plan)
        self.pre: list[StatelessOp] = []  # before the aggregation, or all if there is none
        self.post: list[StatelessOp] = []  # after the aggregation, on each emission
        window: Window | None = None
        window_label = ""
        agg: Aggregation | None = None
        for i, op in plan.operators:
            stateless = as_stateless(i, op)
            if stateless is not None:
                (self.pre if agg is None else self.post).append(stateless)
            elif isinstance(op, Window):
                window, window_label = op, label(i, op)
            elif isinstance(op, Count | Reduce | Aggregate):
                agg = Aggregation(op, label(i, op))
        self.output = Output.of(job, plan)
        self.update: Update | None = None  # None: a stateless stage
        self.agg_label = ""
        if agg is not None:
            self.agg_label = agg.label
            if window is not None:
                self.update = WindowedAggregate(plan.index, window, window_label, agg, self._emit)
            else:
                self.update = KeyedAggregate(plan.index, agg, self._emit)

    def process(self, records: list[InRecord], state: StateAccess) -> BatchResult:
        run = BatchRun(records)
        orig, vals, keys, stamps = self.input.decode(run)
        orig, vals = apply_columns(run, self.pre, orig, vals)
        update = self.update
        if update is None:
            self.output.columns(run, orig, vals, keys, stamps)
            return BatchResult(run.outputs, run.dead, {}, dict(run.views), 0)
        cache = StateCache(state)
        apply_records(run, cache, update, self.agg_label, orig, vals, keys, stamps)
        return BatchResult(run.outputs, run.dead, cache.writes(), dict(run.views), run.late)

    def _emit(self, run: BatchRun, key: str, value: Any, ts: int) -> None:
        self.output.one(run, key, apply_one(self.post, value), ts)
