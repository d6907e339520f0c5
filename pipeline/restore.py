"""Restoring a partition's state from its changelog (issue 16; docs/architecture.md sec. 4,
"Changelogs and restore").

Runs inside a takeover, after the previous owner was fenced in Kafka and in Redis and before
Redis' applied offset R is reconciled: whenever R is behind the committed point - Kafka's
committed offset K under exactly-once, the agreed checkpoint A under at-least-once -,
including a Redis that lost everything (FLUSHALL, restarted without its data files), the
partition's changelog partition is read to its end (read_committed under exactly-once: the
committed transactions are exactly the groups up to K) and written back into Redis, with the
applied offset the changelog stands for. Then the takeover goes on as if nothing was lost.

Interfaces are narrow on purpose: `read` yields the changelog partition's records in batches
(`pipeline.kafka.read_partition`), `target` is the partition's epoch-fenced store
(`pipeline.state.redis.EpochRedisStore.restore`), `progress` is told how many records were
read so far (log and metric).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from pipeline.changelog import Record, Snapshot, changelog_topic
from pipeline.errors import PipelineError
from pipeline.kafka import create_topics, read_partition, topic_partitions

__all__ = ["RestoreTarget", "ensure_changelogs", "needs_restore", "reader", "restore_partition"]

log = logging.getLogger(__name__)

# A changelog keeps only the last value per key (compaction); deleted keys are dropped after
# a day, long after any restore that could need the tombstone.
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "delete.retention.ms": "86400000"}


class RestoreTarget(Protocol):
    def restore(
        self,
        state: Mapping[str, bytes | None],
        view: Mapping[str, bytes | None],
        applied: int | None,
    ) -> None: ...


def needs_restore(applied: int | None, committed: int | None) -> bool:
    """Redis (applied offset R) is behind the committed point (K or A): it lost state."""
    return committed is not None and (applied is None or applied < committed)


def ensure_changelogs(kafka: str, job: str, stateful_stages: Mapping[int, str]) -> None:
    """Create the changelog topic of every stateful stage (stage index -> its input topic),
    partitioned like that input, compacted, with the replication the cluster allows. An
    existing changelog must have the input's partition count (create_topics checks)."""
    if not stateful_stages:
        return
    counts = topic_partitions(kafka, list(stateful_stages.values()))
    missing = [t for t in stateful_stages.values() if t not in counts]
    if missing:
        raise PipelineError(f"job {job!r}: input topics {missing} do not exist")
    create_topics(
        kafka,
        {changelog_topic(job, n): counts[t] for n, t in stateful_stages.items()},
        config=CHANGELOG_CONFIG,
    )


def restore_partition(
    *,
    name: str,
    read: Callable[[], Iterable[Iterable[Record]]],
    target: RestoreTarget,
    committed: int | None,
    exactly_once: bool,
    progress: Callable[[int], None] = lambda n: None,
) -> int | None:
    """Rebuild the partition's keys from its changelog; returns the applied offset written.

    exactly-once: the changelog's committed records are the groups up to K = `committed`, so
    the state is the state at K. at-least-once: the changelog holds every batch whose outputs
    were flushed, possibly past the agreed A, so the state is at max(A, its last batch end)
    (the same rule as `pipeline.commit.takeover.reconcile`: resume after what is durable)."""
    started = time.monotonic()
    log.info("%s: restoring state from its changelog (Redis behind %s)", name, committed)
    snap = Snapshot()
    last_log = started
    for batch in read():
        snap.add(batch)
        progress(snap.records)
        if time.monotonic() - last_log >= 2.0:
            last_log = time.monotonic()
            log.info("%s: restore read %d changelog records so far", name, snap.records)
    if exactly_once:
        if snap.end is not None and committed is not None and snap.end > committed:
            raise PipelineError(
                f"{name}: changelog reaches {snap.end}, past Kafka's commit point {committed}"
                " (bug: changelog records outside the partition's transactions)"
            )
        applied = committed
    else:
        known = [x for x in (snap.end, committed) if x is not None]
        applied = max(known) if known else None
    target.restore(snap.state, snap.view, applied)
    keys = sum(v is not None for v in snap.state.values())
    log.info("%s: restored %d keys (%d view entries) from %d changelog records in %.1fs; "
             "applied offset %s", name, keys, len(snap.view), snap.records,
             time.monotonic() - started, applied)  # fmt: skip
    return applied


def reader(
    kafka: str, job: str, stage: int, partition: int, exactly_once: bool
) -> Callable[[], Iterable[Iterable[Record]]]:
    """The `read` of `restore_partition` for one changelog partition in Kafka."""
    topic = changelog_topic(job, stage)
    return lambda: read_partition(kafka, topic, partition, read_committed=exactly_once)
