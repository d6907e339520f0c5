"""Keyed aggregation (count, reduce, aggregate), and the record-by-record loop all state runs in.

Stateful operators run record by record, not column-wise, with an undo journal
(:class:`~pipeline.executor.state_cache.StateCache`): a record that fails leaves no trace,
because its state updates, emissions and view writes are rolled back before it goes to the
dead letters. What an update does is an :class:`Update`: :class:`KeyedAggregate` here, or a
window in :mod:`pipeline.executor.windows`.

State layout (partition-local; values are MessagePack, see :mod:`pipeline.codecs`):
``s{n}:a:{key}`` is the aggregate of ``key`` in stage ``n``; windows add their own keys.

Aggregates are normalised through MessagePack after every update (tuples become lists,
Structs become dicts), so a value looks the same whether it came from this batch or from
state written by an earlier one: batch boundaries never change results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pipeline.codecs import decode_packed, encode_packed
from pipeline.executor.batch import BatchRun
from pipeline.executor.columns import describe
from pipeline.executor.records import StateAccessError
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.job import Aggregate, Count, Reduce
from pipeline.spec import SpecError

__all__ = ["Aggregation", "Emit", "KeyedAggregate", "Update", "apply_records", "norm"]

_SCALARS = (int, float, str, bool, type(None))

Emit = Callable[[BatchRun, str, Any, int], None]
"""``emit(run, key, value, event time ms)``: hands an aggregate on to the rest of the stage."""


def norm(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    return decode_packed(encode_packed(value))


class Aggregation:
    """An aggregate operator's first value and next value, normalised (see the module doc)."""

    __slots__ = ("initial", "label", "op")

    def __init__(self, op: Count | Reduce | Aggregate, label: str) -> None:
        self.op = op
        self.label = label
        self.initial: Callable[[], Any] | None = None
        if isinstance(op, Aggregate) or (isinstance(op, Reduce) and op.has_initial):
            self.initial = self._initial_factory(op.initial)

    def _initial_factory(self, initial: Any) -> Callable[[], Any]:
        """A fresh copy per key, so a mutable initial value is never shared between keys."""
        if callable(initial):
            factory: Callable[[], Any] = initial
            return lambda: norm(factory())
        if type(initial) in _SCALARS:
            return lambda: initial
        try:
            packed = encode_packed(initial)
        except Exception as exc:
            raise SpecError(f"{self.label}: initial value: {describe(exc)}") from None
        return lambda: decode_packed(packed)

    def fresh(self, value: Any) -> Any:
        initial = self.initial
        op = self.op
        if isinstance(op, Count):
            return 1
        if initial is None:  # reduce without initial: the first value is the accumulator
            return norm(value)
        assert isinstance(op, Reduce | Aggregate)
        return norm(op.fn(initial(), value))

    def step(self, acc: Any, value: Any) -> Any:
        op = self.op
        if isinstance(op, Count):
            return acc + 1
        assert isinstance(op, Reduce | Aggregate)
        return norm(op.fn(acc, value))


class Update(Protocol):
    """How a stateful stage applies its values to state (plain keyed, or windowed)."""

    def prepare(
        self,
        run: BatchRun,
        cache: StateCache,
        orig: list[int],
        vals: list[Any],
        keys: list[Any],
        stamps: list[int],
    ) -> tuple[list[int], list[Any], list[Any], list[int]]:
        """Load the batch's state in one read; return ``orig``, ``vals``, ``keys`` (per value)
        and event times, without the values whose record failed."""
        ...

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
        """Apply values ``i:j`` (all from one input record) to state and emit."""
        ...


class KeyedAggregate:
    """One running aggregate per key, emitted on every update."""

    __slots__ = ("agg", "emit", "prefix")

    def __init__(self, stage: int, agg: Aggregation, emit: Emit) -> None:
        self.prefix = f"s{stage}:a:"
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
        ets = [stamps[o] for o in orig]
        p = self.prefix
        cache.load([p + k for k in keys])
        return orig, vals, keys, ets

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
        agg = self.agg
        for e in range(i, j):
            key = keys[e]
            sk = p + key
            acc = cache.get(sk)
            new = agg.fresh(vals[e]) if acc is ABSENT else agg.step(acc, vals[e])
            cache.put(sk, new)
            self.emit(run, key, new, ets[e])


def apply_records(
    run: BatchRun,
    cache: StateCache,
    update: Update,
    where: str,
    orig: list[int],
    vals: list[Any],
    keys: list[Any],
    stamps: list[int],
) -> None:
    """Apply each input record's values in turn; roll a failing record back and dead-letter it
    (at ``where``, the aggregation, unless the exception names another operator)."""
    orig, vals, ekeys, ets = update.prepare(run, cache, orig, vals, [keys[o] for o in orig], stamps)
    n = len(orig)
    i = 0
    while i < n:
        o = orig[i]
        j = i + 1
        while j < n and orig[j] == o:
            j += 1
        mark = len(cache.journal)
        out_mark, view_mark, late_mark = len(run.outputs), len(run.views), run.late
        try:
            update.update(run, cache, ekeys, vals, ets, i, j)
        except StateAccessError:
            raise
        except Exception as exc:
            cache.rollback(mark)
            del run.outputs[out_mark:]
            del run.views[view_mark:]
            run.late = late_mark
            run.fail(o, exc, getattr(exc, "__paxline_where__", where))
        i = j
    del cache.journal[:]
