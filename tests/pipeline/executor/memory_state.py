"""Test helpers: an in-memory ``StateAccess`` and a driver that runs every stage of a plan.

The driver does what a worker does minus Kafka: it feeds each partition's records through
the plan in batches, routes repartition outputs to the next stage's partitions by key, and
applies state and view writes after each batch, exactly as the commit protocol would.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.executor import BatchResult, DeadLetter, InRecord, OutRecord, Plan

__all__ = ["MemoryState", "Outcome", "json_records", "partition_of", "records", "run_pipeline"]


class MemoryState:
    """Partition-local state in a dict; `apply` mirrors the worker's atomic step."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data: dict[str, bytes] = dict(data or {})
        self.reads = 0

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        self.reads += 1
        return {k: self.data.get(k) for k in keys}

    def apply(self, result: BatchResult) -> None:
        for k, v in result.state_writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v

    def copy(self) -> MemoryState:
        return MemoryState(self.data)


def records(
    topic: str, values: Iterable[bytes | None], *, partition: int = 0, keys: Sequence[Any] = ()
) -> list[InRecord]:
    """InRecords with offsets 0.. and timestamps 1000+offset (ms)."""
    out = []
    for i, v in enumerate(values):
        key = keys[i] if i < len(keys) else None
        out.append(InRecord(topic, partition, i, key, v, 1000 + i))
    return out


def json_records(topic: str, values: Iterable[Any], *, partition: int = 0) -> list[InRecord]:
    return records(topic, (orjson.dumps(v) for v in values), partition=partition)


@dataclass
class Outcome:
    sink: list[OutRecord] = field(default_factory=list)
    view: dict[str, bytes] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    late: int = 0
    states: dict[tuple[int, int], MemoryState] = field(default_factory=dict)

    def state_data(self) -> dict[tuple[int, int], dict[str, bytes]]:
        return {k: dict(s.data) for k, s in sorted(self.states.items()) if s.data}

    def sink_values(self) -> list[Any]:
        return [orjson.loads(r.value) for r in self.sink]


def partition_of(key: bytes | None, count: int) -> int:
    return zlib.crc32(key or b"") % count


def run_pipeline(
    plan: Plan,
    inputs: dict[int, list[InRecord]],
    *,
    batch_size: int | None = None,
    outcome: Outcome | None = None,
) -> Outcome:
    """Run every stage to completion; `outcome` carries state over from an earlier run."""
    out = outcome or Outcome()
    pending: dict[int, dict[int, list[InRecord]]] = {0: dict(inputs)}
    for stage in plan.stages:
        by_partition = pending.get(stage.index, {})
        for partition in sorted(by_partition):
            recs = by_partition[partition]
            state = out.states.setdefault((stage.index, partition), MemoryState())
            size = batch_size or max(len(recs), 1)
            for lo in range(0, len(recs), size):
                result = plan.process(stage.index, recs[lo : lo + size], state)
                state.apply(result)
                for k, v in result.view_writes.items():
                    if v is None:
                        out.view.pop(k, None)
                    else:
                        out.view[k] = v
                out.dead.extend(result.dead_letters)
                out.late += result.late_dropped
                for rec in result.outputs:
                    if stage.output == "repartition":
                        nxt = plan.stages[stage.index + 1]
                        assert rec.topic == nxt.topics[0]
                        p = partition_of(rec.key, nxt.partitions)
                        queue = pending.setdefault(nxt.index, {}).setdefault(p, [])
                        queue.append(
                            InRecord(rec.topic, p, len(queue), rec.key, rec.value, 0, rec.headers)
                        )
                    else:
                        out.sink.append(rec)
    return out
