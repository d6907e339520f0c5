"""What a new owner of a partition does with what is durable (docs/architecture.md, sec. 4).

The worker (`pipeline/eos.py`, `Worker._prepare`) first fences the previous owner - in Kafka
(exactly-once: `init_transactions` with the partition's transactional id, which also aborts
its open transaction) and in Redis (the epoch and the takeover count) - and then reads what
is durable: Kafka's committed offset K of the partition, Redis' applied offset R with its undo
base, and the agreed checkpoint A it was assigned with. `reconcile` decides, purely, what to
do with them; every crash of the commit protocol (`pipeline.commit.protocol`) at any step
leaves a (K, A, R) that it maps back to one failure-free run (tests/pipeline/commit/).

exactly-once: K is the commit point. K ahead of A: commit K through Paxos first (the last
transactions committed, their checkpoints never made it). K equal to A: commit it all the
same - after the fence it proves the coordinators still give us the partition at this
epoch, so a next owner fences us after our fence, never before. R ahead of K by exactly one
group (undo base == K): roll Redis back. R ahead by more, or behind K: state was lost -
stop, never guess. Resume from K (A when Kafka has nothing).

at-least-once: state may be ahead of A (applied, then a crash before the checkpoint); its
outputs were flushed before it was applied, so resume after it: max(A, R).

Seams: `finish_prepared_upto` (not used yet) tells a two-phase sink which prepared parts
passed the commit point (publish them) and that every later one is to be discarded. A state
restore from the changelog (issue 16, `pipeline.restore`) runs after the fence and before
`reconcile` whenever R is behind K (or A), so R is read from the restored state and "behind"
below is reached only without a restore.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.commit.protocol import Guarantee

__all__ = ["Durable", "Reconciliation", "reconcile"]


@dataclass(frozen=True, slots=True)
class Durable:
    """What a new owner read after fencing. `undo_base` is the applied offset Redis' undo
    images restore (None: no undo images kept)."""

    kafka: int | None  # K: Kafka's committed offset (exactly-once only)
    agreed: int | None  # A: the agreed checkpoint from the assignment
    applied: int | None  # R: Redis' applied offset (None: no state / stateless)
    has_undo: bool = False
    undo_base: int | None = None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """`checkpoint`: commit this offset through the coordinators before anything else (a
    "fenced" answer means the partition moved: give it up). `rollback`: roll Redis back one
    group. `lost`: refuse to resume, with this reason. `start`: the offset to resume from."""

    start: int | None
    checkpoint: int | None = None
    rollback: bool = False
    lost: str | None = None
    finish_prepared_upto: int | None = None


def reconcile(guarantee: Guarantee, d: Durable, *, stateful: bool) -> Reconciliation:
    if guarantee is Guarantee.AT_LEAST_ONCE:
        known = [x for x in (d.agreed, d.applied if stateful else None) if x is not None]
        return Reconciliation(start=max(known) if known else None)
    k, a = d.kafka, d.agreed
    ahead = k is not None and (a is None or k > a)
    target = k if ahead else a
    start = k if k is not None else a
    rec = Reconciliation(start=start, checkpoint=target, finish_prepared_upto=k)
    if not stateful or d.applied == k:
        return rec
    r = d.applied
    if r is not None and (k is None or r > k):
        if d.has_undo and d.undo_base == k:
            return Reconciliation(start, target, rollback=True, finish_prepared_upto=k)
        return Reconciliation(start, target, lost=(
            f"Redis applied offset {r} is ahead of Kafka's commit point {k} by more than one "
            f"batch (undo restores {d.undo_base}); refusing to guess"
        ))  # fmt: skip
    return Reconciliation(start, target, lost=(
        f"Redis applied offset {r} is behind Kafka's commit point {k}: state was lost (Redis "
        "must run with AOF, appendfsync always or everysec). Restore Redis or reset the job's "
        "offsets (pause, offsets:reset) before resuming"
    ))  # fmt: skip
