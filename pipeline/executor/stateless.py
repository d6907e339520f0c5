"""map, filter and flat_map: over whole columns before an aggregation, per value after one.

Before a stage's aggregation (or in a stage without one) these operators see the whole batch
at once and run column-wise (:mod:`pipeline.executor.columns`). After an aggregation they see
one emission at a time, inside the per-record loop whose undo journal rolls back a failure,
so there they simply raise, tagged with the operator to blame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.executor.batch import BatchRun, prune
from pipeline.executor.columns import Errors, col_filter, col_flat, col_map
from pipeline.job import Filter, FlatMap, Map
from pipeline.spec import label

__all__ = ["StatelessOp", "apply_columns", "apply_one", "as_stateless"]

StatelessOp = tuple[str, Callable[[Any], Any], str]
"""``(kind, fn, label)``: a tuple, because the hot loops unpack it once per operator."""


def as_stateless(index: int, op: object) -> StatelessOp | None:
    """The stateless operator ``op`` at position ``index``, or None if ``op`` is not one."""
    if isinstance(op, Map):
        return ("map", op.fn, label(index, op))
    if isinstance(op, Filter):
        return ("filter", op.fn, label(index, op))
    if isinstance(op, FlatMap):
        return ("flat_map", op.fn, label(index, op))
    return None


def apply_columns(
    run: BatchRun, ops: list[StatelessOp], orig: list[int], vals: list[Any]
) -> tuple[list[int], list[Any]]:
    """Run ``ops`` over the column ``vals``; ``orig`` follows each value's input record."""
    for kind, fn, where in ops:
        errors: Errors
        if kind == "map":
            vals, errors = col_map(fn, vals)
            for j, exc in errors:
                run.fail(orig[j], exc, where)
        elif kind == "filter":
            mask, errors = col_filter(fn, vals)
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            vals = [v for v, m in zip(vals, mask, strict=True) if m]
            orig = [o for o, m in zip(orig, mask, strict=True) if m]
        else:
            groups, errors = col_flat(fn, vals)
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            vals = [x for g in groups for x in g]
            orig = [o for o, g in zip(orig, groups, strict=True) for _ in g]
        if errors:
            orig, vals = prune(run, orig, vals)
    return orig, vals


def apply_one(ops: list[StatelessOp], value: Any) -> list[Any]:
    """Run ``ops`` on one emission; an exception carries ``__paxline_where__`` (the operator)."""
    values = [value]
    for kind, fn, where in ops:
        try:
            if kind == "map":
                values = [fn(v) for v in values]
            elif kind == "filter":
                values = [v for v in values if fn(v)]
            else:
                values = [x for v in values for x in fn(v)]
        except Exception as exc:
            exc.__paxline_where__ = where  # type: ignore[attr-defined]
            raise
    return values
