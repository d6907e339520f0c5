"""Values that cross the boundary of the Paxos core: ballots, commands, messages and `Ready`.

Everything here is a frozen, slotted dataclass made of ints, strs, bytes, bools, tuples and other
such dataclasses, so that a transport can serialise it (see `coordinator.server.wire`) and so
that a simulator can hold, duplicate and reorder messages without aliasing surprises.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NOOP",
    "Accept",
    "Accepted",
    "AcceptedEntry",
    "Ballot",
    "Batch",
    "Command",
    "DurableState",
    "Heartbeat",
    "HeartbeatAck",
    "InstallSnapshot",
    "Learn",
    "Message",
    "Nack",
    "PersistUpdate",
    "PreVote",
    "PreVoteReply",
    "Prepare",
    "Promise",
    "ProposalResult",
    "ReadResult",
    "Ready",
    "SlotValue",
    "Snapshot",
]


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A proposal number. Ordering by (round, node) makes ballots of different nodes distinct,
    so two proposers can never both believe they own the same ballot."""

    round: int
    node: int

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


ZERO_BALLOT = Ballot(0, 0)


@dataclass(frozen=True, slots=True)
class Command:
    """One client request. `(client_id, seq)` identifies it across retries so that the session
    table can apply it at most once; `payload` is opaque to the core."""

    client_id: str
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """The value agreed for one slot. Batching many commands per slot amortises one Paxos round
    trip over all of them; the empty batch is the no-op used to fill gaps."""

    commands: tuple[Command, ...] = ()


NOOP = Batch(())


@dataclass(frozen=True, slots=True)
class SlotValue:
    slot: int
    value: Batch


@dataclass(frozen=True, slots=True)
class AcceptedEntry:
    """What an acceptor remembers about a slot; reported in promises so a new leader can
    re-propose the value that may already be chosen."""

    slot: int
    ballot: Ballot
    value: Batch


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State after applying every slot up to and including `index`. `data` holds both the
    application state and the session table, because deduplication is replicated state too."""

    index: int
    data: bytes


# --------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for every slot from `from_slot` onward at once (the Multi-Paxos shortcut)."""

    src: int
    dst: int
    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class PreVote:
    """Pre-vote (etcd-io/raft's PreVote): "would you promise `ballot` if I asked?". Nothing is
    persisted on either side and no timer is reset, so a node that cannot reach a quorum (a
    partitioned or starved one) never raises its durable ballot and cannot depose a healthy
    leader when it comes back (docs/architecture.md, 2, "Pre-vote and check-quorum")."""

    src: int
    dst: int
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    """`granted` is false while the sender still hears a live leader (or leads with a live
    quorum). `promised` lets the asker pick a ballot above every promise it learns of."""

    src: int
    dst: int
    ballot: Ballot
    granted: bool
    promised: Ballot
    # The sender is a floor learner (its disk was replaced): it will not promise, and the
    # asker may complete phase 1 without it where that is safe (`Node._phase1_complete`).
    learner: bool = False


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b. `snapshot` is set when the acceptor has truncated slots the candidate asked
    about; those slots are chosen and their effect lives only in the snapshot now."""

    src: int
    dst: int
    ballot: Ballot
    from_slot: int
    accepted: tuple[AcceptedEntry, ...]
    snapshot: Snapshot | None


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for one or more slots; `commit` piggybacks the leader's commit index."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]
    commit: int


@dataclass(frozen=True, slots=True)
class Accepted:
    src: int
    dst: int
    ballot: Ballot
    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    """Rejection of `ballot` because the sender promised `promised`; lets a stale proposer step
    down and pick a higher round next time instead of timing out blindly."""

    src: int
    dst: int
    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness, commit index, and one read-index confirmation round (`round`).
    `recovery` is the leader's recovery target: a learner votes only once it holds every slot
    up to it (`Node._admit`)."""

    src: int
    dst: int
    ballot: Ballot
    commit: int
    round: int
    recovery: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """`need` is the follower's first slot without a known chosen value, which drives catch-up."""

    src: int
    dst: int
    ballot: Ballot
    round: int
    need: int


@dataclass(frozen=True, slots=True)
class Learn:
    """Chosen values resent by the leader to a follower that missed them."""

    src: int
    dst: int
    ballot: Ballot
    entries: tuple[SlotValue, ...]


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Sent instead of `Learn` when the follower needs slots the leader has truncated."""

    src: int
    dst: int
    ballot: Ballot
    snapshot: Snapshot


Message = (
    Prepare
    | Promise
    | Accept
    | Accepted
    | Nack
    | Heartbeat
    | HeartbeatAck
    | Learn
    | InstallSnapshot
    | PreVote
    | PreVoteReply
)

# ------------------------------------------------------------------------- driver handoff


@dataclass(frozen=True, slots=True)
class PersistUpdate:
    """Acceptor state that must be durable before any message of the same `Ready` is sent.

    Apply in this order: `promised`, then `accepted`, then `snapshot` (which also discards every
    accepted entry at or below `snapshot.index`)."""

    promised: Ballot | None = None
    accepted: tuple[AcceptedEntry, ...] = ()
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class DurableState:
    """What a node finds in storage when it (re)starts."""

    promised: Ballot = ZERO_BALLOT
    accepted: tuple[AcceptedEntry, ...] = ()
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class ProposalResult:
    """Outcome of a `Node.propose`. `error` is "" on success, else "not_leader" (retry at
    `leader_hint`) or "stale_seq" (the client already moved past this seq)."""

    client_id: str
    seq: int
    ok: bool
    result: bytes = b""
    error: str = ""
    leader_hint: int | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    read_id: int
    ok: bool
    value: bytes = b""
    error: str = ""
    leader_hint: int | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    """Work the driver must do, in field order: persist, then send, then apply/answer.

    `committed` lists newly chosen slots in order; `Node.advance` applies them to the state
    machine, so the driver only needs them for observation. `results` and `reads` may be
    delivered to clients only after `persist` is durable."""

    persist: PersistUpdate | None
    messages: tuple[Message, ...]
    committed: tuple[SlotValue, ...]
    results: tuple[ProposalResult, ...]
    reads: tuple[ReadResult, ...]

    def empty(self) -> bool:
        return (
            self.persist is None
            and not self.messages
            and not self.committed
            and not self.results
            and not self.reads
        )
