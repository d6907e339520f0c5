"""Deterministic sticky and balanced partition assignment.

The metadata state machine calls :func:`assign` inside ``apply`` on every replica, so the
result must depend on the *values* of the inputs only: every collection is sorted before it
is walked, and ties are always broken by worker id and then by partition.

Rules, in priority order:

1. **Capacity.** A worker never receives more partitions than its capacity for this call.
   Partitions beyond the total capacity stay unassigned (``None``).
2. **Balance.** As many partitions as capacity allows are assigned, and any two workers'
   counts differ by at most one, except that a worker *at its capacity* may hold fewer than
   the others (capacity is a hard limit; balance is best effort around it). This is the
   "water-filling" distribution: each worker gets ``min(capacity, L)`` or ``L + 1`` for one
   level ``L``.
3. **Stickiness.** Among all distributions satisfying 1 and 2, the one with the fewest moves
   is chosen: a partition keeps its previous owner unless that owner is gone or holds more
   than its share. The workers that get the ``L + 1`` shares are the ones that already hold
   the most partitions, so nobody sheds a partition that another worker would then have to
   give back.

Applying :func:`assign` to its own output with unchanged workers changes nothing, which is
what lets the state machine recompute assignments freely without bumping epochs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

__all__ = ["assign", "moved", "targets"]

P = TypeVar("P", bound="tuple[str, int]")


def targets(total: int, capacities: Mapping[str, int], held: Mapping[str, int]) -> dict[str, int]:
    """Return how many of ``total`` partitions each worker should hold.

    ``held`` (partitions each worker may keep from the previous assignment) only decides
    who receives the ``L + 1`` shares, so that the choice costs as few moves as possible.
    """
    for worker_id, cap in capacities.items():
        if cap < 0:
            raise ValueError(f"capacity of worker {worker_id!r} is negative: {cap}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    workers = sorted(capacities)
    if not workers:
        return {}
    assignable = min(total, sum(capacities[w] for w in workers))

    def filled(level: int) -> int:
        return sum(min(capacities[w], level) for w in workers)

    # Largest level L with filled(L) <= assignable; filled is monotone, so bisect.
    lo, hi = 0, assignable
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if filled(mid) <= assignable:
            lo = mid
        else:
            hi = mid - 1
    level = lo
    share = {w: min(capacities[w], level) for w in workers}
    extra = assignable - filled(level)
    eligible = sorted(
        (w for w in workers if capacities[w] > level),
        key=lambda w: (-held.get(w, 0), w),
    )
    for w in eligible[:extra]:
        share[w] += 1
    return share


def assign(
    partitions: Iterable[P],
    workers: Mapping[str, int],
    previous: Mapping[P, str | None],
) -> dict[P, str | None]:
    """Assign every partition to a worker (or ``None``), sticky and balanced.

    ``workers`` maps each live worker id to the number of partitions it may take in this
    call. ``previous`` may mention partitions or workers that no longer exist; they are
    ignored. The result has exactly one entry per distinct partition.
    """
    parts = sorted(set(partitions))
    live = dict(workers)
    # Partitions each live worker held before, in the order it would keep them.
    kept_candidates: dict[str, list[P]] = {w: [] for w in live}
    for p in parts:
        owner = previous.get(p)
        if owner is not None and owner in live:
            kept_candidates[owner].append(p)
    held = {w: len(ps) for w, ps in kept_candidates.items()}
    share = targets(len(parts), live, held)

    result: dict[P, str | None] = dict.fromkeys(parts)
    load = dict.fromkeys(live, 0)
    for w in sorted(live):
        for p in kept_candidates[w][: share[w]]:
            result[p] = w
            load[w] += 1
    # Hand the rest out. Orphans (whose owner is gone or shed
    # them) go first: when capacity is short, leaving an already-unowned partition unowned
    # changes nothing, whereas every orphan changes owner (and epoch) anyway.
    free = iter(
        sorted(
            (p for p in parts if result[p] is None),
            key=lambda p: (previous.get(p) is None, p),
        )
    )
    # Round-robin rather than contiguous runs, so that a fresh job's source and repartition
    # topics spread over all workers instead of one worker getting a whole stage.
    needy = [w for w in sorted(live) if load[w] < share[w]]
    while needy:
        for w in list(needy):
            result[next(free)] = w
            load[w] += 1
            if load[w] >= share[w]:
                needy.remove(w)
    return result


def moved(previous: Mapping[P, str | None], current: Mapping[P, str | None]) -> list[P]:
    """Partitions whose owner differs between two assignments (for metrics and tests)."""
    return sorted(p for p in current if previous.get(p) != current[p])
