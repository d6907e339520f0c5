"""Changelog records of a stateful stage, and folding them back into state (pure; issue 16,
docs/architecture.md sec. 4, "Changelogs and restore").

Every stateful stage writes the new value of each key it changes - or a tombstone for a key
it deletes - to the compacted topic `paxline.{job}.changelog.{n}` (n: the stage index),
partition p holding the state of input partition p whatever the key. The records are
ordinary outputs of the batch (`BatchResult.outputs`), so the commit protocol makes them
durable together with the outputs: in the partition's transaction under exactly-once, flushed
before the state is applied under at-least-once. Redis stays the fast, queryable copy;
`pipeline.restore` rebuilds a partition's keys from its changelog partition when Redis lost
them.

Record key: one byte naming the hash (`s` partition state, `v` the job's view) and the key.
Header `paxline.end`: the end offset of the input batch that changed it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field

from coordinator.protocol import Progress
from pipeline.executor.records import BatchResult, OutRecord

__all__ = ["END_HEADER", "Snapshot", "changelog_topic", "fold", "records", "restoring_progress"]

END_HEADER = "paxline.end"
_STATE, _VIEW = b"s", b"v"

# key, value (None: tombstone), headers - as `pipeline.kafka.read_partition` returns them.
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def changelog_topic(job: str, stage: int) -> str:
    return f"paxline.{job}.changelog.{stage}"


def records(topic: str, partition: int, res: BatchResult, end: int) -> list[OutRecord]:
    """The changelog records of one batch: its state and view writes, last value per key
    (the writes of a batch are already one value per key)."""
    if not res.state_writes and not res.view_writes:
        return []
    headers = ((END_HEADER, str(end).encode()),)
    out = [
        OutRecord(topic, _STATE + k.encode(), v, headers, partition)
        for k, v in res.state_writes.items()
    ]
    out += [
        OutRecord(topic, _VIEW + k.encode(), v, headers, partition)
        for k, v in res.view_writes.items()
    ]
    return out


@dataclass
class Snapshot:
    """A partition's state as its changelog says: the last value of every key (None: deleted)
    and the highest batch end seen (None: empty changelog)."""

    state: dict[str, bytes | None] = field(default_factory=dict)
    view: dict[str, bytes | None] = field(default_factory=dict)
    end: int | None = None
    records: int = 0

    def add(self, batch: Iterable[Record]) -> None:
        for key, value, headers in batch:
            self.records += 1
            if not key:
                continue  # not ours: a changelog record always has a key
            target = self.state if key[:1] == _STATE else self.view if key[:1] == _VIEW else None
            if target is None:
                continue
            target[key[1:].decode()] = value
            for name, raw in headers:
                if name == END_HEADER:
                    end = int(raw)
                    if self.end is None or end > self.end:
                        self.end = end


def fold(batches: Iterable[Iterable[Record]]) -> Snapshot:
    snap = Snapshot()
    for b in batches:
        snap.add(b)
    return snap


def restoring_progress(
    restoring: Mapping[tuple[str, str, int], tuple[float, int]],
    skip: Container[tuple[str, str, int]],
    ends: Mapping[tuple[str, str, int], int],
) -> list[Progress]:
    """What the worker reports (dashboard Status column, `paxline status`) for partitions
    whose state is being restored: `restoring` maps (job, topic, partition) to (since, Unix
    seconds; changelog records read so far). Shown like a stall - the partition processes
    nothing meanwhile - with the records read, so a long restore visibly moves. Partitions in
    `skip` (already owned again) are left out."""
    return [
        Progress(
            job,
            topic,
            partition,
            None,
            ends.get((job, topic, partition), 0),
            stalled=f"restoring state from the changelog ({n:,} records read)",
            stalled_since=since,
        )
        for (job, topic, partition), (since, n) in sorted(restoring.items())
        if (job, topic, partition) not in skip
    ]
