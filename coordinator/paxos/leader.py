"""Proposer state for one ballot: phase 1 aggregation, the phase 2 window, batching, and
read-index confirmation rounds.

A `Leadership` object lives exactly as long as one ballot; stepping down discards it, which is
what makes "never act on a stale ballot" easy to see in the code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from coordinator.paxos.types import NOOP, AcceptedEntry, Ballot, Batch, Command, Promise, Snapshot

__all__ = ["Leadership", "PendingRead", "merge_promises"]


def merge_promises(promises: list[Promise], start: int) -> dict[int, Batch]:
    """For each slot from `start`, the value accepted with the highest ballot in the quorum.

    This is the heart of Paxos safety: if any value may have been chosen in a slot, it is the
    highest-ballot value a quorum reports, so re-proposing it can never contradict a choice.
    """
    best: dict[int, AcceptedEntry] = {}
    for promise in promises:
        for entry in promise.accepted:
            if entry.slot < start:
                continue
            cur = best.get(entry.slot)
            if cur is None or entry.ballot > cur.ballot:
                best[entry.slot] = entry
    return {slot: e.value for slot, e in best.items()}


def best_snapshot(promises: list[Promise]) -> Snapshot | None:
    snaps = [p.snapshot for p in promises if p.snapshot is not None]
    return max(snaps, key=lambda s: s.index) if snaps else None


@dataclass(slots=True)
class PendingRead:
    read_id: int
    query: bytes
    read_index: int
    round: int


@dataclass(slots=True)
class Leadership:
    """Everything a node knows only while it holds (or campaigns for) `ballot`."""

    ballot: Ballot
    from_slot: int
    promises: dict[int, Promise] = field(default_factory=dict)
    active: bool = False  # phase 1 done, phase 2 running
    proposals: dict[int, Batch] = field(default_factory=dict)  # open (unchosen) slots
    votes: dict[int, set[int]] = field(default_factory=dict)
    next_slot: int = 1
    recovery_target: int = 0
    queue: deque[Command] = field(default_factory=deque)
    hb_round: int = 0
    acked_round: dict[int, int] = field(default_factory=dict)
    last_ack_tick: dict[int, int] = field(default_factory=dict)
    reads: list[PendingRead] = field(default_factory=list)
    hb_wanted: bool = False
    # Highest slot whose Accept went out: a slot waits until its configuration is known,
    # i.e. until the leader has applied every slot up to `slot - alpha`.
    sent_upto: int = 0
    # Nodes a candidate must hear from: every member of a configuration its recovery spans.
    targets: tuple[int, ...] = ()
    # Members whose reply to the pre-vote just before this campaign said they are floor
    # learners (and so will not promise).
    learners: frozenset[int] = frozenset()
    # Each peer's first slot without a known chosen value, from its heartbeat acks.
    need: dict[int, int] = field(default_factory=dict)

    def open_slot(self, value: Batch) -> int:
        slot = self.next_slot
        self.next_slot += 1
        self.proposals[slot] = value
        self.votes[slot] = set()
        return slot

    def take_batch(self, max_batch: int) -> Batch:
        cmds: list[Command] = []
        while self.queue and len(cmds) < max_batch:
            cmds.append(self.queue.popleft())
        return Batch(tuple(cmds)) if cmds else NOOP

    def read_round(self) -> int:
        """The heartbeat round a new read must see acknowledged by a quorum: one that starts
        after the read arrived, so acks prove nobody had deposed us when the read began."""
        return self.hb_round + 1

    def confirmed_round(self, members: tuple[int, ...], self_id: int) -> int:
        """The newest heartbeat round a majority of `members` acknowledged (the leader
        trivially confirms its own round, if it is a member)."""
        rounds = sorted(
            (self.hb_round if p == self_id else self.acked_round.get(p, 0) for p in members),
            reverse=True,
        )
        return rounds[len(members) // 2] if rounds else 0
