"""Stream-table joins (issue 18): ``key_by(...).join_table(topic, partitions=N, how=...)``.

The table is materialised in the joining stage's own partition state, and its rows reach
that stage through the stage's repartition topic, merged with the stream: a *table feeder*
stage (:class:`TableFeeder`, a stage of its own in the spec, reading the table topic) forwards
each table record, keyed by its Kafka key, into the repartition topic the joining stage
reads, marked with header ``paxline.table``. The default partitioner places a row on the same
partition as the stream records of its key, so the table is co-partitioned with the stream
whatever the table topic's own partition count.

Because rows and records then sit in ONE partition in offset order, the join is a pure
function of that partition: a replay joins every record with the same row version, and the
table state rides the stage's commit protocol (epoch fencing, undo images, the Kafka
transaction covering the offset) exactly like an aggregate. Records are joined with the rows
that arrived before them in that partition (Kafka Streams' semantics too).

A feeder's records carry provenance with a negative upstream partition (``-1 - p``), so the
downstream de-duplication (pipeline/executor/provenance.py) keeps table and stream positions
apart.

State (partition-local, stage ``n``): ``s{n}:t:{key}`` is the key's row.
"""

from __future__ import annotations

import bisect
from typing import Any

from pipeline.codecs import encode_packed, value_decoder
from pipeline.executor.batch import BatchRun
from pipeline.executor.columns import col_map
from pipeline.executor.encoding import Output, key_str
from pipeline.executor.provenance import ORIGIN_HEADER, SRC_HEADER
from pipeline.executor.records import BatchResult, InRecord, OutRecord, StateAccess
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.executor.stateful import Emit, norm
from pipeline.executor.windows import event_time
from pipeline.job import Job, JoinStream, JoinTable
from pipeline.spec import StagePlan, label, repartition_topic

__all__ = [
    "STREAM_HEADER",
    "TABLE_HEADER",
    "StreamJoin",
    "TableFeeder",
    "TableJoin",
    "TableRow",
    "is_table_row",
]

TABLE_HEADER = "paxline.table"
STREAM_HEADER = "paxline.join"  # a record of the other stream of a join_stream()


def is_table_row(record: InRecord) -> bool:
    """The record came from a feeder: a table row or the other stream's record."""
    headers = record.headers
    return bool(headers) and headers[0][0] in (TABLE_HEADER, STREAM_HEADER)


class TableRow:
    """A decoded record of the other side (table row or other stream's record) on its way
    through the joining stage, told apart from the stream's own values."""

    __slots__ = ("row",)

    def __init__(self, row: Any) -> None:
        self.row = row


class TableFeeder:
    """The stage reading a joined topic (a table, or the other stream of a join_stream):
    forwards each record, keyed, to the joining stage's partition of its key."""

    __slots__ = ("decode", "header", "key_fn", "label", "output", "ts_fn", "update")

    def __init__(self, job: Job, plan: StagePlan) -> None:
        assert plan.join is not None and plan.feeds is not None
        index, op = plan.join
        self.label = label(index, op)
        self.output = Output("repartition", self.label, repartition_topic(job.name, plan.feeds))
        self.decode = value_decoder(op.value)
        self.update: None = None  # stateless: forwards records, keeps nothing
        self.header = TABLE_HEADER if isinstance(op, JoinTable) else STREAM_HEADER
        self.key_fn = op.key if isinstance(op, JoinStream) else None
        self.ts_fn = op.timestamp if isinstance(op, JoinStream) else None

    def process(self, records: list[InRecord], state: StateAccess) -> BatchResult:
        run = BatchRun(records)
        decode, key_fn, ts_fn = self.decode, self.key_fn, self.ts_fn

        def forward(r: InRecord) -> tuple[bytes, bytes]:
            value = None if r.value is None and key_fn is None else decode(r.value)
            if key_fn is not None:
                key = key_str(key_fn(value)).encode("utf-8")
            elif r.key is None:
                raise ValueError("record has no key (the key is what it joins on)")
            else:
                key = r.key
            ts = r.timestamp_ms if ts_fn is None else event_time(ts_fn(value))
            return key, encode_packed((ts, value))

        pairs, errors = col_map(forward, records)
        for j, exc in errors:
            run.fail(j, exc, self.label)
        topic = self.output.topic
        assert topic is not None
        out: list[OutRecord] = []
        for j, (r, kv) in enumerate(zip(records, pairs, strict=True)):
            if j in run.failed:
                continue
            headers = (
                (self.header, b""),
                (SRC_HEADER, b"%d:%d:0" % (-1 - r.partition, r.offset)),
                (ORIGIN_HEADER, b"%s:%d:%d" % (r.topic.encode(), r.partition, r.offset)),
            )
            out.append(OutRecord(topic, kv[0], kv[1], headers))
        return BatchResult(out, run.dead, {}, {}, 0)


class TableJoin:
    """The joining stage's update: rows replace the key's row, records are joined with it."""

    __slots__ = ("emit", "fn", "inner", "label", "prefix")

    def __init__(self, stage: int, op: JoinTable, where: str, emit: Emit) -> None:
        self.prefix = f"s{stage}:t:"
        self.inner = op.how == "inner"
        self.fn = op.fn
        self.label = where
        self.emit = emit

    @staticmethod
    def mark(run: BatchRun, orig: list[int], vals: list[Any]) -> list[Any]:
        """Wrap the values that came from the table (their record has the table header)."""
        records = run.records
        return [
            TableRow(v) if is_table_row(records[o]) else v for o, v in zip(orig, vals, strict=True)
        ]

    def prepare(
        self,
        run: BatchRun,
        cache: StateCache,
        orig: list[int],
        vals: list[Any],
        keys: list[Any],
        stamps: list[int],
    ) -> tuple[list[int], list[Any], list[Any], list[int]]:
        p = self.prefix
        cache.load([p + k for k in keys])
        return orig, vals, keys, [stamps[o] for o in orig]

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
        for e in range(i, j):
            key, v = keys[e], vals[e]
            sk = p + key
            if isinstance(v, TableRow):
                cache.put(sk, ABSENT if v.row is None else norm(v.row))
                continue
            row = cache.get(sk)
            if row is ABSENT:
                if self.inner:
                    continue
                row = None
            self.emit(run, key, self.fn(v, row), ets[e])


class StreamJoin:
    """A windowed stream-stream join: both sides buffered per key, each pair emitted once,
    when its second record arrives (in the partition's offset order).

    State (stage ``n``): ``s{n}:wm`` the watermark; ``s{n}:jl:{key}`` / ``s{n}:jr:{key}`` the
    key's buffered ``[[t, value]...]`` of this stream / the other; ``s{n}:jx`` sorted
    ``[latest t, key]`` so that a key's buffers are dropped once no record that is not late
    can pair with them (watermark - 2 * within - grace passed its latest time).
    """

    __slots__ = ("emit", "fn", "grace", "label", "prefix", "ts_fn", "within")

    def __init__(self, stage: int, op: JoinStream, where: str, emit: Emit) -> None:
        self.prefix = f"s{stage}:"
        self.within = op.within_ms
        self.grace = op.grace_ms
        self.fn = op.fn
        self.ts_fn = op.timestamp
        self.label = where
        self.emit = emit

    mark = staticmethod(TableJoin.mark)

    def prepare(
        self,
        run: BatchRun,
        cache: StateCache,
        orig: list[int],
        vals: list[Any],
        keys: list[Any],
        stamps: list[int],
    ) -> tuple[list[int], list[Any], list[Any], list[int]]:
        ts_fn = self.ts_fn
        ets: list[int] = []
        keep: list[int] = []
        for k, (o, v) in enumerate(zip(orig, vals, strict=True)):
            if ts_fn is None or isinstance(v, TableRow):  # the feeder stamped the other side
                ets.append(stamps[o])
                keep.append(k)
                continue
            try:
                ets.append(event_time(ts_fn(v)))
                keep.append(k)
            except Exception as exc:
                run.fail(o, exc, self.label)
        orig = [orig[k] for k in keep]
        vals = [vals[k] for k in keep]
        keys = [keys[k] for k in keep]
        p = self.prefix
        cache.load([p + "wm", p + "jx", *(f"{p}j{s}:{k}" for k in keys for s in "lr")])
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
        within = self.within
        wm_key, jx_key = p + "wm", p + "jx"
        for e in range(i, j):
            key, v, t = keys[e], vals[e], ets[e]
            wm = cache.get(wm_key)
            if wm is not ABSENT and t < wm - within - self.grace:
                run.late += 1
                continue
            other_side = isinstance(v, TableRow)
            value = norm(v.row if other_side else v)
            if other_side:
                mine, theirs = f"{p}jr:{key}", f"{p}jl:{key}"
            else:
                mine, theirs = f"{p}jl:{key}", f"{p}jr:{key}"
            got = cache.get(theirs)
            partners: list[list[Any]] = [] if got is ABSENT else got
            for to, ov in partners:
                if abs(to - t) <= within:
                    pair = self.fn(ov, value) if other_side else self.fn(value, ov)
                    self.emit(run, key, pair, max(t, to))
            got = cache.get(mine)
            before: list[list[Any]] = [] if got is ABSENT else got
            latest = max([tv[0] for tv in before] + [tv[0] for tv in partners], default=None)
            if wm is not ABSENT:  # a busy key: drop what no record to come can pair with
                horizon = wm - 2 * within - self.grace
                if any(tv[0] < horizon for tv in partners):
                    kept = [tv for tv in partners if tv[0] >= horizon]
                    cache.put(theirs, kept if kept else ABSENT)
                before = [tv for tv in before if tv[0] >= horizon]
            cache.put(mine, [*before, [t, value]])
            if latest is None or t > latest:
                index = cache.get(jx_key)
                index = [] if index is ABSENT else list(index)
                if latest is not None:
                    index.remove([latest, key])
                bisect.insort(index, [t, key])
                cache.put(jx_key, index)
            if wm is ABSENT or t > wm:
                cache.put(wm_key, t)
                self._evict(cache, t)

    def _evict(self, cache: StateCache, wm: int) -> None:
        p = self.prefix
        jx_key = p + "jx"
        index = cache.get(jx_key)
        if index is ABSENT:
            return
        horizon = wm - 2 * self.within - self.grace
        gone = 0
        while gone < len(index) and index[gone][0] < horizon:
            gone += 1
        if not gone:
            return
        for _, key in index[:gone]:
            cache.get(f"{p}jl:{key}")
            cache.get(f"{p}jr:{key}")
            cache.put(f"{p}jl:{key}", ABSENT)
            cache.put(f"{p}jr:{key}", ABSENT)
        rest = index[gone:]
        cache.put(jx_key, rest if rest else ABSENT)
