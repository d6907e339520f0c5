"""Checkpoint commits through the coordinators (docs/architecture.md, sec. 4).

A worker commits, per job and per fencing epoch, the next offset to read of every partition
it has finished (outputs flushed, state applied). The coordinator accepts the commit only if
the worker still owns each partition at exactly that epoch; a `Fenced` answer means another
worker owns it now, and this one must stop touching it at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected

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
    """One `CommitCheckpoint` per (job, epoch) group; all-or-nothing within a group.

    When a group is fenced, its partitions are committed again one by one so that a single
    moved partition does not hold back the progress of the others in the group."""
    groups: dict[tuple[str, int], list[Pending]] = defaultdict(list)
    for p in pending:
        groups[(p.job, p.epoch)].append(p)
    out = CommitOutcome([], [], [])
    for (job, epoch), items in sorted(groups.items()):
        status = _commit(client, worker_id, job, epoch, items)
        if status == "fenced" and len(items) > 1:
            for item in items:
                _record(out, item, _commit(client, worker_id, job, epoch, [item]))
        else:
            for item in items:
                _record(out, item, status)
    return out


def _record(out: CommitOutcome, item: Pending, status: str) -> None:
    {"ok": out.committed, "fenced": out.fenced}.get(status, out.failed).append(item)


def _commit(
    client: CoordinatorClient, worker_id: str, job: str, epoch: int, items: list[Pending]
) -> str:
    offsets = {(p.topic, p.partition): p.offset for p in items}
    try:
        client.commit_checkpoint(job, worker_id, epoch, offsets)
    except RequestRejected as exc:
        if exc.result in ("Fenced", "UnknownJob"):
            log.info("checkpoint of %s at epoch %d fenced: %s", job, epoch, exc)
            return "fenced"
        log.error("checkpoint of %s rejected: %s", job, exc)
        return "failed"
    except CoordinatorUnavailable as exc:
        log.warning("checkpoint of %s not committed yet: %s", job, exc)
        return "failed"
    return "ok"
