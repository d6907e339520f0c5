"""The narrow durability contract between the core and a disk.

The core never writes to storage itself: it hands a `PersistUpdate` to the driver inside a
`Ready`, and the driver must make it durable before sending that Ready's messages. Keeping the
interface this small (one load, one atomic save) is what lets a real log-structured store and the
simulator's crash-prone disk stand in for each other.
"""

from __future__ import annotations

from typing import Protocol

from coordinator.paxos.types import (
    ZERO_BALLOT,
    AcceptedEntry,
    Ballot,
    DurableState,
    PersistUpdate,
    Snapshot,
)

__all__ = ["MemoryStorage", "Storage"]


class Storage(Protocol):
    """Durable acceptor state: promised ballot, accepted (ballot, value) per slot, snapshot.

    `save` must be atomic (all of the update or none survives a crash) and durable when it
    returns. `load` returns what a restarting node may rely on. Chosen values and the commit
    index need not be stored: they are re-learned from the leader.
    """

    def load(self) -> DurableState: ...

    def save(self, update: PersistUpdate) -> None: ...


class MemoryStorage:
    """In-memory `Storage`; durable for as long as the object lives, which is exactly what a
    simulator needs to model a disk that survives process crashes."""

    __slots__ = ("_accepted", "_promised", "_snapshot", "saves")

    def __init__(self) -> None:
        self._promised: Ballot = ZERO_BALLOT
        self._accepted: dict[int, AcceptedEntry] = {}
        self._snapshot: Snapshot | None = None
        self.saves = 0

    def load(self) -> DurableState:
        return DurableState(
            promised=self._promised,
            accepted=tuple(self._accepted[s] for s in sorted(self._accepted)),
            snapshot=self._snapshot,
        )

    def save(self, update: PersistUpdate) -> None:
        self.saves += 1
        if update.promised is not None and update.promised > self._promised:
            self._promised = update.promised
        for entry in update.accepted:
            self._accepted[entry.slot] = entry
        snap = update.snapshot
        if snap is not None and (self._snapshot is None or snap.index > self._snapshot.index):
            self._snapshot = snap
            for slot in [s for s in self._accepted if s <= snap.index]:
                del self._accepted[slot]
