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

from typing import Any

from pipeline.codecs import encode_packed, value_decoder
from pipeline.executor.batch import BatchRun
from pipeline.executor.columns import col_map
from pipeline.executor.encoding import Output
from pipeline.executor.provenance import ORIGIN_HEADER, SRC_HEADER
from pipeline.executor.records import BatchResult, InRecord, OutRecord, StateAccess
from pipeline.executor.state_cache import ABSENT, StateCache
from pipeline.executor.stateful import Emit, norm
from pipeline.job import Job, JoinTable
from pipeline.spec import StagePlan, label, repartition_topic

__all__ = ["TABLE_HEADER", "TableFeeder", "TableJoin", "TableRow", "is_table_row"]

TABLE_HEADER = "paxline.table"


def is_table_row(record: InRecord) -> bool:
    headers = record.headers
    return bool(headers) and headers[0][0] == TABLE_HEADER


class TableRow:
    """A decoded table record on its way through the joining stage (not a stream value)."""

    __slots__ = ("row",)

    def __init__(self, row: Any) -> None:
        self.row = row


class TableFeeder:
    """The stage reading a table topic: forwards each row to the joining stage's partition."""

    __slots__ = ("decode", "label", "output", "update")

    def __init__(self, job: Job, plan: StagePlan) -> None:
        assert plan.join is not None and plan.feeds is not None
        index, op = plan.join
        self.label = label(index, op)
        self.output = Output("repartition", self.label, repartition_topic(job.name, plan.feeds))
        self.decode = value_decoder(op.value)
        self.update: None = None  # stateless: forwards rows, keeps nothing

    def process(self, records: list[InRecord], state: StateAccess) -> BatchResult:
        run = BatchRun(records)
        decode = self.decode

        def row(r: InRecord) -> bytes:
            if r.key is None:
                raise ValueError("table record has no key (the key is the row's key)")
            return encode_packed((r.timestamp_ms, None if r.value is None else decode(r.value)))

        payloads, errors = col_map(row, records)
        for j, exc in errors:
            run.fail(j, exc, self.label)
        topic = self.output.topic
        assert topic is not None
        out: list[OutRecord] = []
        for j, (r, p) in enumerate(zip(records, payloads, strict=True)):
            if j in run.failed:
                continue
            headers = (
                (TABLE_HEADER, b""),
                (SRC_HEADER, b"%d:%d:0" % (-1 - r.partition, r.offset)),
                (ORIGIN_HEADER, b"%s:%d:%d" % (r.topic.encode(), r.partition, r.offset)),
            )
            assert r.key is not None
            out.append(OutRecord(topic, r.key, p, headers))
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
