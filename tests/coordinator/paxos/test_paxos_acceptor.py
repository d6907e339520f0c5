"""Acceptor rules, as tables: what it promises/accepts, and what it asks the driver to persist."""

from __future__ import annotations

import pytest

from coordinator.paxos.acceptor import Acceptor
from coordinator.paxos.types import (
    AcceptedEntry,
    Ballot,
    Batch,
    Command,
    DurableState,
    SlotValue,
    Snapshot,
)

B1, B2, B3 = Ballot(1, 1), Ballot(1, 2), Ballot(2, 1)
X = Batch((Command("c", 1, b"x"),))
Y = Batch((Command("c", 2, b"y"),))


@pytest.mark.parametrize(
    ("promised", "prepare", "ok"),
    [
        (Ballot(0, 0), B1, True),  # fresh acceptor promises anything
        (B1, B1, True),  # a retransmitted Prepare is answered again
        (B1, B2, True),  # same round, higher node id is higher
        (B2, B1, False),  # never go back
        (B3, B2, False),
    ],
)
def test_prepare_promises_only_non_decreasing_ballots(
    promised: Ballot, prepare: Ballot, ok: bool
) -> None:
    a = Acceptor(DurableState(promised=promised))
    got, _, _ = a.prepare(prepare, 1)
    assert got is ok
    assert a.promised == max(promised, prepare)


def test_promise_reports_accepted_values_from_the_requested_slot_on() -> None:
    a = Acceptor(
        DurableState(
            promised=B1,
            accepted=(AcceptedEntry(1, B1, X), AcceptedEntry(2, B1, Y), AcceptedEntry(3, B1, X)),
        )
    )
    ok, entries, snap = a.prepare(B3, 2)
    assert ok
    assert [e.slot for e in entries] == [2, 3]
    assert snap is None


def test_promise_includes_snapshot_when_requested_slots_were_truncated() -> None:
    snap = Snapshot(10, b"state")
    a = Acceptor(DurableState(promised=B1, snapshot=snap))
    assert a.prepare(B3, 5)[2] == snap
    assert a.prepare(B3, 11)[2] is None


def test_every_state_change_is_handed_to_the_driver_before_it_counts() -> None:
    a = Acceptor(DurableState())
    assert a.take_persist() is None
    a.prepare(B1, 1)
    update = a.take_persist()
    assert update is not None and update.promised == B1 and update.accepted == ()
    assert a.accept(B1, (SlotValue(1, X),))
    update = a.take_persist()
    assert update is not None
    assert update.promised is None  # unchanged promise is not rewritten
    assert update.accepted == (AcceptedEntry(1, B1, X),)
    assert a.accept(B1, (SlotValue(1, X),))  # retransmission: nothing new to persist
    assert a.take_persist() is None


@pytest.mark.parametrize(
    ("promised", "accept", "ok"),
    [(B1, B1, True), (B1, B3, True), (B3, B1, False)],
)
def test_accept_respects_the_promise(promised: Ballot, accept: Ballot, ok: bool) -> None:
    a = Acceptor(DurableState(promised=promised))
    assert a.accept(accept, (SlotValue(1, X),)) is ok
    assert (1 in a.accepted) is ok
    assert a.promised == max(promised, accept)


def test_higher_ballot_overwrites_accepted_value() -> None:
    a = Acceptor(DurableState())
    a.accept(B1, (SlotValue(1, X),))
    a.accept(B3, (SlotValue(1, Y),))
    assert a.accepted[1] == AcceptedEntry(1, B3, Y)


def test_snapshot_truncates_accepted_entries_it_covers() -> None:
    a = Acceptor(DurableState())
    a.accept(B1, (SlotValue(1, X), SlotValue(2, Y), SlotValue(3, X)))
    a.install_snapshot(Snapshot(2, b"s"))
    assert sorted(a.accepted) == [3]
    update = a.take_persist()
    assert update is not None and update.snapshot == Snapshot(2, b"s")
    assert [e.slot for e in update.accepted] == [3]
    # slots covered by the snapshot are chosen: acknowledged, not stored
    assert a.accept(B1, (SlotValue(2, X),))
    assert 2 not in a.accepted


def test_a_learners_promise_is_the_highest_ballot_it_ever_accepted() -> None:
    """`accept_unpromised` (a floor learner's vote) refuses anything below what it accepted,
    even once a snapshot has dropped the entry that carried that ballot, and a reloaded
    acceptor starts from the highest ballot in its log."""
    a = Acceptor(DurableState())
    assert a.max_accepted_ballot() is None
    assert a.accept_unpromised(B1, (SlotValue(1, X),))
    assert a.accept_unpromised(B3, (SlotValue(2, Y),))
    assert a.accept_unpromised(B2, (SlotValue(3, X),)) is False
    assert a.promised == Ballot(0, 0)  # a learner's vote promises nothing
    a.install_snapshot(Snapshot(2, b"s"))
    assert a.max_accepted_ballot() == B3
    assert a.accept_unpromised(B2, (SlotValue(3, X),)) is False
    reloaded = Acceptor(DurableState(accepted=(AcceptedEntry(4, B2, X), AcceptedEntry(5, B1, Y))))
    assert reloaded.max_accepted_ballot() == B2
