"""PURE executor: compiles a job's operator graph into one batch function per stage.

The worker owns all I/O; this module only turns ``(records of one partition, state)`` into
``BatchResult`` (outputs, dead letters, state and view writes). Keeping it pure is what makes
exactly-once work: replaying the same input from the same state must give byte-identical
results, so there is no clock, no randomness and no iteration over unordered collections.

Hot path: stateless operators run column-wise over the whole batch (one tight loop per
operator, no per-record objects); a loop that hits an exception resumes after the failing
element, so user functions are called exactly once per element. Stateful operators run
record by record with an undo journal, so a record that fails leaves no trace: its state
updates, emissions and view writes are rolled back and it goes to ``dead_letters``.

State layout (partition-local; values are MessagePack, see :mod:`pipeline.codecs`):

* ``s{n}:a:{key}`` — aggregate of ``key`` in stage ``n`` (count/reduce/aggregate)
* ``s{n}:wm`` — the partition's watermark (max event time seen, ms)
* ``s{n}:wi`` — sorted starts of open windows
* ``s{n}:wk:{start}`` — keys with state in the window starting at ``start`` (arrival order)
* ``s{n}:w:{start}:{key}`` — accumulator of ``key`` in that window

Aggregates are normalised through MessagePack after every update (tuples become lists,
Structs become dicts), so a value looks the same whether it came from this batch or from
state written by an earlier one: batch boundaries never change results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

import orjson

from pipeline.codecs import (
    decode_packed,
    encode_packed,
    json_default,
    sink_encoder,
    typed_converter,
    value_decoder,
)
from pipeline.errors import PipelineError
from pipeline.job import (
    Aggregate,
    Count,
    Filter,
    FlatMap,
    Job,
    Map,
    Reduce,
    ToKafka,
    ToRedis,
    Window,
)
from pipeline.provenance import stamp
from pipeline.spec import SpecError, StagePlan, label, repartition_topic, stages_of

__all__ = [
    "BatchResult",
    "DeadLetter",
    "InRecord",
    "OutRecord",
    "Plan",
    "PlanError",
    "Stage",
    "StateAccess",
    "StateAccessError",
    "compile_job",
]


# InRecord and OutRecord are made once per record on the hot path: slotted but not frozen,
# because a frozen dataclass's __init__ goes through object.__setattr__ (about 3x slower).
# Treat them as immutable all the same.
@dataclass(slots=True)
class InRecord:
    """One Kafka record as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class OutRecord:
    """A record to produce; the producer picks the partition from ``key``."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed; ``stage`` names the operator (e.g. ``map#3``)."""

    record: InRecord
    error: str
    stage: str


class StateAccess(Protocol):
    """Partition-local keyed state, injected by the worker (memory or Redis)."""

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]: ...


@dataclass
class BatchResult:
    outputs: list[OutRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    state_writes: dict[str, bytes | None] = field(default_factory=dict)
    view_writes: dict[str, bytes | None] = field(default_factory=dict)
    late_dropped: int = 0


@dataclass(frozen=True, slots=True)
class Stage:
    """Public description of one stage (what a worker needs to route an assigned topic)."""

    index: int
    topics: tuple[str, ...]
    partitions: int
    operators: tuple[str, ...]
    output: str  # "repartition" | "kafka" | "redis"
    output_topic: str | None  # repartition or Kafka sink topic; None for Redis
    stateful: bool


class PlanError(PipelineError, LookupError):
    """A worker asked for a stage or topic this plan does not have."""


class StateAccessError(PipelineError):
    """Reading or decoding state failed: an infrastructure problem, never a dead letter."""


# --------------------------------------------------------------------------------------
# Column-wise helpers: resume after a failing element instead of re-running the batch
# --------------------------------------------------------------------------------------

_FAILED: Any = object()
_ABSENT: Any = object()
_SCALARS = (int, float, str, bool, type(None))

Errors = list[tuple[int, Exception]]


def _col_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], Errors]:
    out: list[Any] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(fn(x))
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append(_FAILED)
            start = len(out)


def _col_filter(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[bool], Errors]:
    out: list[bool] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(True if fn(x) else False)  # noqa: SIM210 - truthiness may raise here
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append(False)
            start = len(out)


def _col_flat(
    fn: Callable[[Any], Iterable[Any]], items: Sequence[Any]
) -> tuple[list[list[Any]], Errors]:
    out: list[list[Any]] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(list(fn(x)))
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append([])
            start = len(out)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _key_str(key: Any) -> str:
    """Keys are strings everywhere (state keys, view keys, Kafka keys as UTF-8)."""
    if type(key) is str:
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8")
    if key is None:
        raise TypeError("key_by returned None; every record needs a key")
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS, default=json_default).decode("utf-8")


def _timestamp(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return int(value)
    raise TypeError(f"timestamp must be epoch milliseconds (int), got {type(value).__name__}")


def _norm(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    return decode_packed(encode_packed(value))


# --------------------------------------------------------------------------------------
# State cache with an undo journal
# --------------------------------------------------------------------------------------

_POP: Any = object()  # journal marker: undo an append


class _Cache:
    __slots__ = ("dirty", "journal", "state", "vals")

    def __init__(self, state: StateAccess) -> None:
        self.state = state
        self.vals: dict[str, Any] = {}
        self.journal: list[tuple[str, Any]] = []
        self.dirty: set[str] = set()

    def load(self, keys: Iterable[str]) -> None:
        vals = self.vals
        missing = sorted({k for k in keys if k not in vals})
        if not missing:
            return
        try:
            got = self.state.get_many(missing)
            for k in missing:
                raw = got.get(k)
                vals[k] = _ABSENT if raw is None else decode_packed(raw)
        except Exception as exc:
            raise StateAccessError(f"reading state failed: {_describe(exc)}") from exc

    def get(self, key: str) -> Any:
        try:
            return self.vals[key]
        except KeyError:
            self.load((key,))
            return self.vals[key]

    def put(self, key: str, value: Any) -> None:
        self.journal.append((key, self.vals[key]))
        self.vals[key] = value
        self.dirty.add(key)

    def append(self, key: str, item: Any) -> None:
        self.vals[key].append(item)
        self.journal.append((key, _POP))
        self.dirty.add(key)

    def rollback(self, mark: int) -> None:
        journal, vals = self.journal, self.vals
        while len(journal) > mark:
            key, prev = journal.pop()
            if prev is _POP:
                vals[key].pop()
            else:
                vals[key] = prev

    def writes(self) -> dict[str, bytes | None]:
        vals = self.vals
        out: dict[str, bytes | None] = {}
        for k in sorted(self.dirty):
            v = vals[k]
            out[k] = None if v is _ABSENT else encode_packed(v)
        return out


# --------------------------------------------------------------------------------------
# One stage
# --------------------------------------------------------------------------------------

_StatelessOp = tuple[str, Callable[[Any], Any], str]  # (kind, fn, label)


class _Run:
    """Mutable per-batch scratch space (kept off the runner so batches never share it)."""

    __slots__ = ("dead", "failed", "late", "outputs", "records", "views")

    def __init__(self, records: list[InRecord]) -> None:
        self.records = records
        self.failed: set[int] = set()
        self.dead: list[DeadLetter] = []
        self.outputs: list[OutRecord] = []
        self.views: list[tuple[str, bytes | None]] = []
        self.late = 0

    def fail(self, origin: int, exc: BaseException, where: str, note: str = "") -> None:
        if origin in self.failed:
            return
        self.failed.add(origin)
        self.dead.append(DeadLetter(self.records[origin], _describe(exc) + note, where))


class _StageRunner:
    def __init__(self, job: Job, plan: StagePlan) -> None:
        self.index = plan.index
        self.topic = plan.topic
        self.prefix = f"s{plan.index}:"
        self.decode_label = (
            "source#0" if plan.index == 0 else f"decode:{repartition_topic(job.name, plan.index)}"
        )
        self.decoder = value_decoder(plan.value) if plan.index == 0 else None
        self.converter = (
            typed_converter(plan.value) if plan.index > 0 and plan.value is not None else None
        )
        self.pre: list[_StatelessOp] = []
        self.post: list[_StatelessOp] = []
        self.window: Window | None = None
        self.window_label = ""
        self.agg: Count | Reduce | Aggregate | None = None
        self.agg_label = ""
        for i, op in plan.operators:
            target = self.pre if self.agg is None else self.post
            if isinstance(op, Map):
                target.append(("map", op.fn, label(i, op)))
            elif isinstance(op, Filter):
                target.append(("filter", op.fn, label(i, op)))
            elif isinstance(op, FlatMap):
                target.append(("flat_map", op.fn, label(i, op)))
            elif isinstance(op, Window):
                self.window, self.window_label = op, label(i, op)
            elif isinstance(op, Count | Reduce | Aggregate):
                self.agg, self.agg_label = op, label(i, op)
        self.initial: Callable[[], Any] | None = None
        if isinstance(self.agg, Aggregate) or (
            isinstance(self.agg, Reduce) and self.agg.has_initial
        ):
            self.initial = self._initial_factory(self.agg.initial)
        # terminal
        self.key_fn: Callable[[Any], Any] | None = None
        self.out_topic: str | None = None
        self.view = False
        self.encode: Callable[[Any], bytes] = sink_encoder("json")
        if plan.key_by is not None:
            ki, kop = plan.key_by
            self.terminal_label = label(ki, kop)
            self.key_fn = kop.fn
            self.out_topic = repartition_topic(job.name, plan.index + 1)
            self.output = "repartition"
        else:
            assert plan.sink is not None
            si, sop = plan.sink
            self.terminal_label = label(si, sop)
            if isinstance(sop, ToKafka):
                self.out_topic = sop.topic
                self.encode = sink_encoder(sop.value)
                self.output = "kafka"
            else:
                assert isinstance(sop, ToRedis)
                self.view = True
                self.output = "redis"
        self.stage = Stage(
            plan.index,
            (plan.topic,),
            plan.partitions,
            tuple(label(i, op) for i, op in plan.operators),
            self.output,
            self.out_topic,
            self.agg is not None,
        )

    def _initial_factory(self, initial: Any) -> Callable[[], Any]:
        if callable(initial):
            factory: Callable[[], Any] = initial
            return lambda: _norm(factory())
        if type(initial) in _SCALARS:
            return lambda: initial
        try:
            packed = encode_packed(initial)
        except Exception as exc:
            raise SpecError(f"{self.agg_label}: initial value: {_describe(exc)}") from None
        return lambda: decode_packed(packed)

    # ---------------------------------------------------------------------------- batch

    def process(self, records: list[InRecord], state: StateAccess) -> BatchResult:
        run = _Run(records)
        orig, vals, keys, stamps = self._decode(run)
        orig, vals = self._stateless(run, self.pre, orig, vals)
        if self.agg is None:
            self._terminal_columns(run, orig, vals, keys, stamps)
            return BatchResult(run.outputs, run.dead, {}, dict(run.views), 0)
        cache = _Cache(state)
        self._stateful(run, cache, orig, vals, keys, stamps)
        return BatchResult(run.outputs, run.dead, cache.writes(), dict(run.views), run.late)

    def _decode(self, run: _Run) -> tuple[list[int], list[Any], list[Any], list[int]]:
        """Values per record plus per-record keys and timestamps (looked up by origin)."""
        records = run.records
        if self.decoder is not None:
            vals, errors = _col_map(self.decoder, [r.value for r in records])
            keys: list[Any] = [r.key for r in records]
            stamps = [r.timestamp_ms for r in records]
        else:
            converter = self.converter

            def unpack(r: InRecord) -> tuple[str, int, Any]:
                if r.key is None:
                    raise ValueError("repartition record has no key")
                if r.value is None:
                    raise ValueError("repartition record has no value")
                ts, value = decode_packed(r.value)
                if converter is not None:
                    value = converter(value)
                return r.key.decode("utf-8"), ts, value

            triples, errors = _col_map(unpack, records)
            keys = [t[0] if t is not _FAILED else None for t in triples]
            stamps = [t[1] if t is not _FAILED else 0 for t in triples]
            vals = [t[2] if t is not _FAILED else None for t in triples]
        orig = list(range(len(records)))
        if errors:
            for j, exc in errors:
                note = " (record has no value)" if records[j].value is None else ""
                run.fail(j, exc, self.decode_label, note)
            orig, vals = self._prune(run, orig, vals)
        return orig, vals, keys, stamps

    @staticmethod
    def _prune(run: _Run, orig: list[int], vals: list[Any]) -> tuple[list[int], list[Any]]:
        failed = run.failed
        keep = [k for k, o in enumerate(orig) if o not in failed]
        return [orig[k] for k in keep], [vals[k] for k in keep]

    def _stateless(
        self, run: _Run, ops: list[_StatelessOp], orig: list[int], vals: list[Any]
    ) -> tuple[list[int], list[Any]]:
        for kind, fn, where in ops:
            errors: Errors
            if kind == "map":
                vals, errors = _col_map(fn, vals)
                for j, exc in errors:
                    run.fail(orig[j], exc, where)
            elif kind == "filter":
                mask, errors = _col_filter(fn, vals)
                for j, exc in errors:
                    run.fail(orig[j], exc, where)
                vals = [v for v, m in zip(vals, mask, strict=True) if m]
                orig = [o for o, m in zip(orig, mask, strict=True) if m]
            else:
                groups, errors = _col_flat(fn, vals)
                for j, exc in errors:
                    run.fail(orig[j], exc, where)
                vals = [x for g in groups for x in g]
                orig = [o for o, g in zip(orig, groups, strict=True) for _ in g]
            if errors:
                orig, vals = self._prune(run, orig, vals)
        return orig, vals

    def _terminal_columns(
        self, run: _Run, orig: list[int], vals: list[Any], keys: list[Any], stamps: list[int]
    ) -> None:
        records = run.records
        where = self.terminal_label
        if self.key_fn is not None:
            key_fn = self.key_fn
            new_keys, errors = _col_map(lambda v: _key_str(key_fn(v)), vals)
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            payloads, errors = _col_map(
                encode_packed, [(stamps[o], v) for o, v in zip(orig, vals, strict=True)]
            )
            for j, exc in errors:
                run.fail(orig[j], exc, where, f" (value crossing {self.out_topic})")
            topic = self.out_topic
            assert topic is not None
            failed = run.failed
            # Provenance lets a stateful downstream stage drop records this stage produces
            # twice under at-least-once (see pipeline.provenance).
            seen: dict[int, int] = {}
            out: list[OutRecord] = []
            for o, k, p in zip(orig, new_keys, payloads, strict=True):
                if o in failed:
                    continue
                n = seen.get(o, 0)
                seen[o] = n + 1
                out.append(OutRecord(topic, k.encode("utf-8"), p, stamp(records[o], n)))
            run.outputs = out
            return
        if self.view:
            views: list[tuple[int, str, bytes | None]] = []
            encode = self.encode
            for o, v in zip(orig, vals, strict=True):
                try:
                    k = keys[o]
                    if k is None:
                        raise ValueError("record has no key for the Redis view")
                    sk = k if type(k) is str else k.decode("utf-8")
                    views.append((o, sk, None if v is None else encode(v)))
                except Exception as view_exc:
                    run.fail(o, view_exc, where)
            failed = run.failed
            run.views = [(k, b) for o, k, b in views if o not in failed]
            return
        encoded, errors = _col_map(self.encode, vals)
        topic = self.out_topic
        assert topic is not None
        if errors:
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            failed = run.failed
            run.outputs = [
                OutRecord(topic, records[o].key, e)
                for o, e in zip(orig, encoded, strict=True)
                if o not in failed
            ]
        else:
            run.outputs = [
                OutRecord(topic, records[o].key, e) for o, e in zip(orig, encoded, strict=True)
            ]

    # ------------------------------------------------------------------------- stateful

    def _stateful(
        self,
        run: _Run,
        cache: _Cache,
        orig: list[int],
        vals: list[Any],
        keys: list[Any],
        stamps: list[int],
    ) -> None:
        window = self.window
        ekeys = [keys[o] for o in orig]
        if window is not None:
            ts_fn = window.timestamp
            if ts_fn is not None:
                fn = ts_fn
                ets, errors = _col_map(lambda v: _timestamp(fn(v)), vals)
                if errors:
                    for j, exc in errors:
                        run.fail(orig[j], exc, self.window_label)
                    keep = [k for k, o in enumerate(orig) if o not in run.failed]
                    orig = [orig[k] for k in keep]
                    vals = [vals[k] for k in keep]
                    ekeys = [ekeys[k] for k in keep]
                    ets = [ets[k] for k in keep]
            else:
                ets = [stamps[o] for o in orig]
            p = self.prefix
            wanted = [p + "wm", p + "wi"]
            starts_of = window.spec.starts
            for k, t in zip(ekeys, ets, strict=True):
                for s in starts_of(t):
                    wanted.append(f"{p}wk:{s}")
                    wanted.append(f"{p}w:{s}:{k}")
            cache.load(wanted)
        else:
            ets = [stamps[o] for o in orig]
            p = self.prefix + "a:"
            cache.load([p + k for k in ekeys])
        update = self._update_window if window is not None else self._update_agg
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
                update(run, cache, ekeys, vals, ets, i, j)
            except StateAccessError:
                raise
            except Exception as exc:
                cache.rollback(mark)
                del run.outputs[out_mark:]
                del run.views[view_mark:]
                run.late = late_mark
                where = getattr(exc, "__paxline_where__", self.agg_label)
                run.fail(o, exc, where)
            i = j
        del cache.journal[:]

    def _fresh(self, value: Any) -> Any:
        initial = self.initial
        agg = self.agg
        if isinstance(agg, Count):
            return 1
        if initial is None:  # reduce without initial: the first value is the accumulator
            return _norm(value)
        assert isinstance(agg, Reduce | Aggregate)
        return _norm(agg.fn(initial(), value))

    def _step(self, acc: Any, value: Any) -> Any:
        agg = self.agg
        if isinstance(agg, Count):
            return acc + 1
        assert isinstance(agg, Reduce | Aggregate)
        return _norm(agg.fn(acc, value))

    def _update_agg(
        self,
        run: _Run,
        cache: _Cache,
        keys: list[Any],
        vals: list[Any],
        ets: list[int],
        i: int,
        j: int,
    ) -> None:
        p = self.prefix + "a:"
        for e in range(i, j):
            key = keys[e]
            sk = p + key
            acc = cache.get(sk)
            new = self._fresh(vals[e]) if acc is _ABSENT else self._step(acc, vals[e])
            cache.put(sk, new)
            self._emit(run, key, new, ets[e])

    def _update_window(
        self,
        run: _Run,
        cache: _Cache,
        keys: list[Any],
        vals: list[Any],
        ets: list[int],
        i: int,
        j: int,
    ) -> None:
        window = self.window
        assert window is not None
        size = window.spec.size_ms
        lateness = window.allowed_lateness_ms
        p = self.prefix
        wm_key, wi_key = p + "wm", p + "wi"
        wm = cache.get(wm_key)
        high = wm
        for e in range(i, j):
            key, value, t = keys[e], vals[e], ets[e]
            late = False
            for start in window.spec.starts(t):
                if wm is not _ABSENT and wm >= start + size + lateness:
                    late = True
                    continue
                ak = f"{p}w:{start}:{key}"
                acc = cache.get(ak)
                if acc is _ABSENT:
                    new = self._fresh(value)
                    kl_key = f"{p}wk:{start}"
                    if cache.get(kl_key) is _ABSENT:
                        cache.put(kl_key, [key])
                        index = cache.get(wi_key)
                        opened = [] if index is _ABSENT else index
                        cache.put(wi_key, sorted([*opened, start]))
                    else:
                        cache.append(kl_key, key)
                else:
                    new = self._step(acc, value)
                cache.put(ak, new)
            if late:
                run.late += 1
            if high is _ABSENT or t > high:
                high = t
        if high is _ABSENT or (wm is not _ABSENT and high <= wm):
            return
        cache.put(wm_key, high)
        index = cache.get(wi_key)
        if index is _ABSENT:
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
                cache.put(ak, _ABSENT)
                self._emit(run, k, emission, end - 1)
            cache.put(kl_key, _ABSENT)
        if closed:
            rest = index[closed:]
            cache.put(wi_key, rest if rest else _ABSENT)

    def _emit(self, run: _Run, key: str, value: Any, ts: int) -> None:
        values = [value]
        for kind, fn, where in self.post:
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
        try:
            for v in values:
                if self.key_fn is not None:
                    topic = self.out_topic
                    assert topic is not None
                    new_key = _key_str(self.key_fn(v))
                    run.outputs.append(
                        OutRecord(topic, new_key.encode("utf-8"), encode_packed((ts, v)))
                    )
                elif self.view:
                    run.views.append((key, None if v is None else self.encode(v)))
                else:
                    topic = self.out_topic
                    assert topic is not None
                    run.outputs.append(OutRecord(topic, key.encode("utf-8"), self.encode(v)))
        except Exception as exc:
            exc.__paxline_where__ = self.terminal_label  # type: ignore[attr-defined]
            raise


# --------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------


class Plan:
    """A compiled job: one batch function per stage, routed by input topic."""

    __slots__ = ("_by_topic", "_runners", "dead_letter_topic", "guarantee", "job_name", "stages")

    def __init__(self, job: Job) -> None:
        plans = stages_of(job)
        self.job_name = job.name
        self.guarantee = job.guarantee
        self.dead_letter_topic = job.dlq_topic
        self._runners = [_StageRunner(job, p) for p in plans]
        self.stages: list[Stage] = [r.stage for r in self._runners]
        self._by_topic = {s.topics[0]: s.index for s in self.stages}

    def stage_for_topic(self, topic: str) -> int:
        """The stage that consumes ``topic`` (a source or a repartition topic)."""
        try:
            return self._by_topic[topic]
        except KeyError:
            known = ", ".join(sorted(self._by_topic))
            raise PlanError(
                f"job {self.job_name!r} does not read {topic!r} (reads {known})"
            ) from None

    def process(self, stage: int, records: list[InRecord], state: StateAccess) -> BatchResult:
        """Run one batch of ONE partition's records (in offset order) through ``stage``."""
        if not 0 <= stage < len(self._runners):
            raise PlanError(
                f"job {self.job_name!r} has stages 0..{len(self._runners) - 1}, not {stage}"
            )
        return self._runners[stage].process(records, state)


def compile_job(job: Job) -> Plan:
    """Validate ``job`` (raising :class:`~pipeline.spec.SpecError`) and compile it."""
    return Plan(job)
