"""Checkpoint commits through the coordinators (docs/architecture.md, sec. 4).

A worker commits, per job and per fencing epoch, the next offset to read of every partition
it has finished (outputs flushed, state applied). The coordinator accepts a group only if
the worker still owns each of its partitions at exactly that epoch; a `Fenced` answer means
another worker owns one of them now, and this one must stop touching it at once.

All groups of one interval go in one request (`CommitCheckpointBatch`, issue 17): one Paxos
command per worker per interval instead of one per (job, epoch) group, each group still
fenced on its own.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from coordinator.commands import (
    CheckpointCommitted,
    CheckpointGroup,
    Fenced,
    GroupResult,
    UnknownJob,
)

__all__ = ["CommitOutcome", "Pending", "commit_checkpoints"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    job: str
    topic: str
    partition: int
    epoch: int
    offset: int


@dataclass
class CommitOutcome:
    committed: list[Pending]
    fenced: list[Pending]
    failed: list[Pending]


def commit_checkpoints(
    client: CoordinatorClient, worker_id: str, pending: Iterable[Pending]
) -> CommitOutcome:
    """One batch of (job, epoch) groups; all-or-nothing within a group, each group on its own.

    When a group is fenced, its partitions are committed again one by one (as singleton
    groups of one more batch) so that a single moved partition does not hold back the
    progress of the others in the group."""
    groups: dict[tuple[str, int], list[Pending]] = defaultdict(list)
    for p in pending:
        groups[(p.job, p.epoch)].append(p)
    out = CommitOutcome([], [], [])
    if not groups:
        return out
    batch = [items for _, items in sorted(groups.items())]
    again: list[list[Pending]] = []
    for items, status in zip(batch, _commit(client, worker_id, batch), strict=True):
        if status == "fenced" and len(items) > 1:
            again.extend([item] for item in items)
        else:
            for item in items:
                _record(out, item, status)
    if again:
        for items, status in zip(again, _commit(client, worker_id, again), strict=True):
            _record(out, items[0], status)
    return out


def _record(out: CommitOutcome, item: Pending, status: str) -> None:
    {"ok": out.committed, "fenced": out.fenced}.get(status, out.failed).append(item)


def _commit(client: CoordinatorClient, worker_id: str, batch: list[list[Pending]]) -> list[str]:
    """Each group's status ("ok", "fenced", "failed"), in the batch's order."""
    groups = [
        CheckpointGroup(
            items[0].job, items[0].epoch, {(p.topic, p.partition): p.offset for p in items}
        )
        for items in batch
    ]
    try:
        applied = client.commit_checkpoint_batch(worker_id, groups)
    except RequestRejected as exc:
        log.error("checkpoint batch of %d groups rejected: %s", len(groups), exc)
        return ["failed"] * len(groups)
    except CoordinatorUnavailable as exc:
        log.warning("checkpoint batch of %d groups not committed yet: %s", len(groups), exc)
        return ["failed"] * len(groups)
    if len(applied.results) != len(groups):  # a coordinator bug; commit nothing of it
        log.error("checkpoint batch answer has %d results for %d groups",
                  len(applied.results), len(groups))  # fmt: skip
        return ["failed"] * len(groups)
    return [_status(g, r) for g, r in zip(groups, applied.results, strict=True)]


def _status(group: CheckpointGroup, result: GroupResult | None) -> str:
    """The same reading as a single commit's answer: `Fenced` and `UnknownJob` (cancelled)
    mean "not ours any more"; anything else that is not a commit is a failure to retry.
    (`None` is the machine's own word for committed; the API expands it.)"""
    if result is None or isinstance(result, CheckpointCommitted):
        return "ok"
    if isinstance(result, Fenced | UnknownJob):
        log.info("checkpoint of %s at epoch %d fenced: %s", group.job, group.epoch, result)
        return "fenced"
    log.error("checkpoint of %s rejected: %s", group.job, result)
    return "failed"
