"""The acceptor role: the only state whose loss can break agreement.

Every change goes through `_record_*`, which queues it for the driver to persist; replies are
queued by the node in the same `Ready`, so they can only leave after the write is durable.
"""

from __future__ import annotations

from coordinator.paxos.types import (
    AcceptedEntry,
    Ballot,
    DurableState,
    PersistUpdate,
    SlotValue,
    Snapshot,
)

__all__ = ["Acceptor"]


class Acceptor:
    __slots__ = (
        "_dirty",
        "_dirty_promised",
        "_dirty_snapshot",
        "_top",
        "accepted",
        "promised",
        "snapshot",
    )

    def __init__(self, durable: DurableState) -> None:
        self.promised: Ballot = durable.promised
        self.snapshot: Snapshot | None = durable.snapshot
        floor = self.snap_index
        self.accepted: dict[int, AcceptedEntry] = {
            e.slot: e for e in durable.accepted if e.slot > floor
        }
        # The highest ballot this acceptor has accepted (see `max_accepted_ballot`), kept as
        # it goes so a floor learner's every Accept and Heartbeat need not scan its log.
        self._top: Ballot | None = max((e.ballot for e in self.accepted.values()), default=None)
        self._dirty_promised = False
        self._dirty: dict[int, AcceptedEntry] = {}
        self._dirty_snapshot: Snapshot | None = None

    @property
    def snap_index(self) -> int:
        return self.snapshot.index if self.snapshot is not None else 0

    # ----------------------------------------------------------------------------- phase 1
    def prepare(
        self, ballot: Ballot, from_slot: int
    ) -> tuple[bool, tuple[AcceptedEntry, ...], Snapshot | None]:
        """Promise `ballot` if no higher one was promised. Equal ballots are re-promised so a
        retransmitted Prepare gets an answer."""
        if ballot < self.promised:
            return False, (), None
        if ballot > self.promised:
            self._record_promise(ballot)
        entries = tuple(self.accepted[s] for s in sorted(self.accepted) if s >= from_slot)
        snap = self.snapshot if self.snap_index >= from_slot else None
        return True, entries, snap

    # ----------------------------------------------------------------------------- phase 2
    def accept(self, ballot: Ballot, entries: tuple[SlotValue, ...]) -> bool:
        """Accept unless a higher ballot was promised. Slots at or below the snapshot are
        acknowledged without storing: they are chosen, and a leader whose phase 1 covered them
        necessarily proposes the chosen value."""
        if ballot < self.promised:
            return False
        if ballot > self.promised:
            self._record_promise(ballot)
        self._store(ballot, entries)
        return True

    def accept_unpromised(self, ballot: Ballot, entries: tuple[SlotValue, ...]) -> bool:
        """A floor learner's vote (`Node._on_accept`): accept as `accept` does, but leave the
        durable promise where it is, so that the node stays a learner (it promises and
        campaigns only once admitted). Never below a ballot already accepted: for a node that
        promises nothing, its accepted ballots are its promise."""
        top = self._top
        if ballot < self.promised or (top is not None and ballot < top):
            return False
        self._store(ballot, entries)
        return True

    def _store(self, ballot: Ballot, entries: tuple[SlotValue, ...]) -> None:
        floor = self.snap_index
        for sv in entries:
            if sv.slot <= floor:
                continue
            cur = self.accepted.get(sv.slot)
            if cur is not None and cur.ballot == ballot and cur.value == sv.value:
                continue  # retransmission; already durable
            self._record_accept(AcceptedEntry(sv.slot, ballot, sv.value))

    def max_accepted_ballot(self) -> Ballot | None:
        """The highest ballot accepted since this acceptor was loaded: a floor learner's only
        promise. It does not fall when a snapshot drops the entries that carried it (a voter's
        promise does not either)."""
        return self._top

    def install_snapshot(self, snap: Snapshot) -> None:
        if snap.index <= self.snap_index:
            return
        self.snapshot = snap
        self._dirty_snapshot = snap
        for slot in [s for s in self.accepted if s <= snap.index]:
            del self.accepted[slot]
        for slot in [s for s in self._dirty if s <= snap.index]:
            del self._dirty[slot]

    def promise_self(self, ballot: Ballot) -> None:
        """A candidate promises its own ballot durably before asking others, so that a restart
        can never reuse the ballot."""
        if ballot > self.promised:
            self._record_promise(ballot)

    # ------------------------------------------------------------------------- durability
    def _record_promise(self, ballot: Ballot) -> None:
        self.promised = ballot
        self._dirty_promised = True

    def _record_accept(self, entry: AcceptedEntry) -> None:
        self.accepted[entry.slot] = entry
        self._dirty[entry.slot] = entry
        if self._top is None or entry.ballot > self._top:
            self._top = entry.ballot

    def take_persist(self) -> PersistUpdate | None:
        if not self._dirty_promised and not self._dirty and self._dirty_snapshot is None:
            return None
        update = PersistUpdate(
            promised=self.promised if self._dirty_promised else None,
            accepted=tuple(self._dirty[s] for s in sorted(self._dirty)),
            snapshot=self._dirty_snapshot,
        )
        self._dirty_promised = False
        self._dirty = {}
        self._dirty_snapshot = None
        return update

    def has_persist(self) -> bool:
        return self._dirty_promised or bool(self._dirty) or self._dirty_snapshot is not None
