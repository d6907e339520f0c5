"""Stalled partitions as `paxline status` shows them: "stalled: Redis unreachable since
12:03:04", per partition and summed up per worker.

Workers report a stall in their heartbeat (`Progress.stalled`, `stalled_since`); the
coordinators return it in `GET /v1/jobs/{name}/offsets` (docs/architecture.md, sec. 6). The
dashboard formats the same fields the same way (coordinator/server/dashboard/static/app.js,
`stallText`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.client import CoordinatorClient

__all__ = ["PartitionStall", "by_worker", "collect", "stall_text"]


@dataclass(frozen=True)
class PartitionStall:
    job: str
    topic: str
    partition: int
    worker: str | None
    reason: str
    since: float | None

    @property
    def text(self) -> str:
        return stall_text(self.reason, self.since)


def stall_text(reason: str, since: float | None) -> str:
    """ "stalled: Redis unreachable since 12:03:04" (local time; no time if none was sent)."""
    if since is None:
        return f"stalled: {reason}"
    return f"stalled: {reason} since {time.strftime('%H:%M:%S', time.localtime(since))}"


def collect(client: CoordinatorClient) -> list[PartitionStall]:
    """Every stalled partition of every job, as the coordinators last heard from workers."""
    out: list[PartitionStall] = []
    for job in client.jobs():
        name = job.spec.name
        for p in client.offsets(name):
            if p.stalled:
                out.append(PartitionStall(name, p.topic, p.partition, p.owner, p.stalled,
                                          p.stalled_since))  # fmt: skip
    return out


def by_worker(stalls: Iterable[PartitionStall]) -> dict[str, str]:
    """worker -> "2 partitions stalled: Redis unreachable since 12:03:04" (the earliest
    since of its most common reason; other reasons are counted after it)."""
    grouped: dict[str, dict[str, list[PartitionStall]]] = {}
    for s in stalls:
        grouped.setdefault(s.worker or "unassigned", {}).setdefault(s.reason, []).append(s)
    out: dict[str, str] = {}
    for worker, reasons in grouped.items():
        ordered = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        reason, first = ordered[0]
        since = min((s.since for s in first if s.since is not None), default=None)
        n = len(first)
        text = f"{n} partition{'s' if n != 1 else ''} {stall_text(reason, since)}"
        others = sum(len(v) for _, v in ordered[1:])
        out[worker] = text + (f" (+{others} stalled otherwise)" if others else "")
    return out
