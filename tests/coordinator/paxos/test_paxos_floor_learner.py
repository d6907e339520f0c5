"""The floor learner: a node whose disk was replaced may have promised or accepted anything up
to its `floor` and forgotten it (issue 11, item 2). It learns, but it never promises, never
campaigns and never confirms a read until a leader above the floor has given it every slot that
leader knew chosen and it has durably snapshotted them together with its first promise. Above
its floor it does accept, without promising (issue 17e: else a configuration of two could never
choose what it must hold to be admitted; tests/coordinator/paxos/test_paxos_two_member_wipe.py).

Scenarios are tables of messages fed to one node; cluster scenarios replay from their seeds."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from coordinator.paxos.node import Node, NodeConfig, Role
from coordinator.paxos.storage import MemoryStorage
from coordinator.paxos.types import (
    ZERO_BALLOT,
    Accept,
    Accepted,
    Ballot,
    Batch,
    Command,
    DurableState,
    Heartbeat,
    HeartbeatAck,
    Learn,
    Message,
    Nack,
    Prepare,
    Promise,
    SlotValue,
)
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import KVMachine, write_command

FLOOR = Ballot(4, 1)
ABOVE = Ballot(5, 1)  # a leader whose phase 1 ran without the learner


def batch(seq: int) -> Batch:
    return Batch((Command("a", seq, write_command("put", "k", str(seq))),))


def slots(*numbers: int) -> tuple[SlotValue, ...]:
    return tuple(SlotValue(s, batch(s)) for s in numbers)


def learner(seed: int = 0, floor: Ballot = FLOOR) -> Node:
    """Node 3 restarted on an empty disk."""
    cfg = NodeConfig(node_id=3, peers=(1, 2, 3))
    return Node(cfg, DurableState(), KVMachine(), random.Random(seed), floor=floor)


def is_vote(m: Message) -> bool:
    """What only an admitted voter may send: promises and read-index confirmations. (A
    learner accepts above its floor: an acceptance rests on no forgotten state.)"""
    return isinstance(m, Promise) or (isinstance(m, HeartbeatAck) and m.round > 0)


@dataclass
class Sent:
    """One Ready as the driver handled it: the durable state once its persist part was saved
    (before its messages left), the messages, and how far the node had applied by then."""

    durable: DurableState
    messages: tuple[Message, ...]
    applied_before: int


def drive(node: Node, storage: MemoryStorage, inbox: list[Message]) -> list[Sent]:
    """Step each message, then run the driver contract until the node is quiet."""
    out: list[Sent] = []
    for m in inbox:
        node.step(m)
        while node.has_ready():
            applied = node.applied
            rd = node.ready()
            if rd.persist is not None:
                storage.save(rd.persist)
            out.append(Sent(storage.load(), rd.messages, applied))
            node.advance(rd)
    return out


# ------------------------------------------------------------------------- before admission


@pytest.mark.parametrize(
    "ballot", [Ballot(1, 2), Ballot(4, 1), Ballot(5, 2), Ballot(99, 1)], ids=str
)
def test_a_learner_ignores_prepare_at_any_ballot(ballot: Ballot) -> None:
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, [Prepare(1, 3, ballot, 1)])
    assert [s.messages for s in sent] == []
    assert n.acceptor.promised == ZERO_BALLOT and disk.saves == 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_learner_never_campaigns_however_long_it_hears_nobody(seed: int) -> None:
    n, disk = learner(seed), MemoryStorage()
    for _ in range(20 * n.config.election_ticks):
        n.tick()
        assert not n.has_ready()
    assert n.role is Role.FOLLOWER and disk.saves == 0


AT_OR_BELOW_FLOOR = [
    Accept(1, 3, FLOOR, slots(1), 0),
    Accept(2, 3, Ballot(2, 2), slots(1, 2), 1),
    Heartbeat(1, 3, FLOOR, 0, 7),
    Heartbeat(2, 3, Ballot(3, 2), 5, 1),
]


@pytest.mark.parametrize("msg", AT_OR_BELOW_FLOOR, ids=lambda m: f"{type(m).__name__}@{m.ballot}")
def test_a_learner_nacks_a_leader_at_or_below_its_floor_with_a_ballot_above_it(
    msg: Accept | Heartbeat,
) -> None:
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, [msg])
    (nack,) = [m for s in sent for m in s.messages]
    assert nack == Nack(3, msg.src, msg.ballot, Ballot(FLOOR.round + 1, 0))
    assert nack.promised > FLOOR >= msg.ballot  # the leader must re-run phase 1 above the floor
    assert disk.saves == 0 and not n.voter


def test_a_learner_asks_a_leader_above_its_floor_for_catch_up_and_accepts_without_promising() -> (
    None
):
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, [Heartbeat(1, 3, ABOVE, 3, 7), Accept(1, 3, ABOVE, slots(4), 3)])
    assert [m for s in sent for m in s.messages] == [
        HeartbeatAck(3, 1, ABOVE, 0, 1),
        Accepted(3, 1, ABOVE, (4,)),
    ]
    assert n.leader_id == 1 and not n.voter
    durable = disk.load()
    assert durable.promised == ZERO_BALLOT  # still a learner after a restart
    assert [(e.slot, e.ballot) for e in durable.accepted] == [(4, ABOVE)]


def test_a_learner_never_accepts_below_a_ballot_it_accepted() -> None:
    """Its accepted ballots are its only promise: a late Accept of an older leader above the
    floor is Nacked, not written over the newer acceptance."""
    newer = Ballot(6, 2)
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, [Accept(2, 3, newer, slots(4), 3), Accept(1, 3, ABOVE, slots(4, 5), 3)])
    msgs = [m for s in sent for m in s.messages]
    assert msgs == [Accepted(3, 2, newer, (4,)), Nack(3, 1, ABOVE, newer)]
    assert [(e.slot, e.ballot) for e in disk.load().accepted] == [(4, newer)]


# -------------------------------------------------------------------------------- admission

# Each scenario brings the learner to the point where a leader above the floor whose commit
# index is 3 can count on it. Some deliver the catch-up first and the leader's message after,
# some the other way round; some reach the commit index in several pieces.
ADMISSIONS = {
    "heartbeat, then learn in pieces": [
        Heartbeat(1, 3, ABOVE, 3, 1),
        Accept(1, 3, ABOVE, slots(4), 3),
        Learn(1, 3, ABOVE, slots(1, 2)),
        Learn(1, 3, ABOVE, slots(3)),
        Heartbeat(1, 3, ABOVE, 3, 2),
        Accept(1, 3, ABOVE, slots(4), 3),
    ],
    "learn first, then the leader's accept": [
        Learn(1, 3, ABOVE, slots(1, 2, 3)),
        # Not admitted by an Accept (it carries no recovery target): accepted unpromised ...
        Accept(1, 3, ABOVE, slots(4), 3),
        Heartbeat(1, 3, ABOVE, 3, 2),
        # ... and the leader's retransmission accepted again, once admitted.
        Accept(1, 3, ABOVE, slots(4), 3),
    ],
    "learn first, then the leader's heartbeat": [
        Learn(1, 3, ABOVE, slots(1, 2, 3)),
        Heartbeat(1, 3, ABOVE, 3, 2),
        Accept(1, 3, ABOVE, slots(4), 3),
    ],
    "a commit index that grows while catching up": [
        Heartbeat(1, 3, ABOVE, 2, 1),
        Learn(1, 3, ABOVE, slots(1)),
        Heartbeat(1, 3, ABOVE, 3, 2),
        Learn(1, 3, ABOVE, slots(2)),
        Learn(1, 3, ABOVE, slots(3)),
        Accept(1, 3, ABOVE, slots(4), 3),
        Heartbeat(1, 3, ABOVE, 3, 3),
    ],
}


@pytest.mark.parametrize("script", ADMISSIONS.values(), ids=ADMISSIONS.keys())
def test_a_learner_votes_only_after_catching_up_and_durably_snapshotting_with_its_promise(
    script: list[Message],
) -> None:
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, script)

    votes = [i for i, s in enumerate(sent) if any(is_vote(m) for m in s.messages)]
    assert votes, "the learner never voted"
    first = sent[votes[0]]
    # Everything the leader knew chosen was applied before the first vote ...
    assert first.applied_before >= 3
    # ... and is on disk, as a snapshot, with a promise above the floor, saved from the same
    # or an earlier Ready: the driver saves a Ready's persist part before sending anything.
    assert first.durable.snapshot is not None and first.durable.snapshot.index >= 3
    assert first.durable.promised == ABOVE and first.durable.promised > FLOOR
    assert n.voter and n.acceptor.promised == ABOVE
    assert n.machine.app.query(b"k") == b"3"
    # Slot 4 was accepted, before admission (unpromised) or after it.
    assert any(Accepted(3, 1, ABOVE, (4,)) in s.messages for s in sent)
    assert (4, ABOVE) in [(e.slot, e.ballot) for e in disk.load().accepted]


def test_a_learner_that_learned_everything_is_not_admitted_by_a_leader_at_its_floor() -> None:
    n, disk = learner(), MemoryStorage()
    sent = drive(n, disk, [Learn(1, 3, FLOOR, slots(1, 2, 3)), Accept(1, 3, FLOOR, slots(4), 3)])
    assert not any(is_vote(m) for s in sent for m in s.messages)
    assert not n.voter and disk.load().promised == ZERO_BALLOT


# --------------------------------------------------------------------------- whole cluster


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_wiped_node_rejoins_a_cluster_and_votes_only_after_catching_up(seed: int) -> None:
    """n3's disk is replaced while n1 leads; it restarts with n1's ballot as its floor (the
    highest promise it may have made). n1 is Nacked, re-runs phase 1 above the floor with n2,
    brings n3 up to date, and only then does n3 vote; it then takes part in new choices."""
    c = LocalCluster(seed=seed, snapshot_every=4, max_batch=1)
    c.elect(1)
    for seq in range(1, 7):
        c.propose(1, Command("a", seq, write_command("put", "k", str(seq))))
    c.tick(2)
    before = c.nodes[1].commit_index
    old_ballot = c.nodes[1].ballot
    assert old_ballot is not None

    c.storage[3] = MemoryStorage()
    cfg = NodeConfig(node_id=3, peers=c.ids, snapshot_every=4, max_batch=1)
    c.nodes[3] = wiped = Node(cfg, DurableState(), KVMachine(), random.Random(seed), old_ballot)
    sent: list[Sent] = []
    plain_flush = c.flush

    def recording_flush(i: int) -> None:
        if i != 3:
            plain_flush(i)
            return
        while wiped.has_ready():
            applied = wiped.applied
            rd = wiped.ready()
            if rd.persist is not None:
                c.storage[3].save(rd.persist)
            sent.append(Sent(c.storage[3].load(), rd.messages, applied))
            c.inflight.extend(m for m in rd.messages if m.dst not in c.down)
            c.applied[3].extend(rd.committed)
            wiped.advance(rd)

    c.flush = recording_flush  # type: ignore[method-assign]
    for _ in range(10 * cfg.election_ticks):
        if wiped.voter:
            break
        c.tick()
    assert wiped.voter, "the wiped node was never admitted"
    leader = c.leader()
    assert leader is not None and leader.ballot is not None and leader.ballot > old_ballot
    c.tick(2)  # heartbeats that the admitted node now acknowledges as a voter

    first = next(s for s in sent if any(is_vote(m) for m in s.messages))
    assert first.applied_before >= before
    assert first.durable.promised > old_ballot
    assert first.durable.snapshot is not None and first.durable.snapshot.index >= before

    c.crash(2)  # n3 is now needed for a quorum
    c.propose(leader.id, Command("a", 7, write_command("put", "k", "after")))
    c.tick(2)
    assert wiped.machine.app.query(b"k") == b"after"
    chosen: dict[int, Batch] = {}
    for i in c.ids:
        for sv in c.applied[i]:
            assert chosen.setdefault(sv.slot, sv.value) == sv.value, f"slot {sv.slot} diverged"
