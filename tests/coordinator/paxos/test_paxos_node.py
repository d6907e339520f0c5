"""Scenario scripts for the replica: messages in, messages and answers out."""

from __future__ import annotations

import random

import pytest

from coordinator.paxos.errors import ConfigError
from coordinator.paxos.node import Node, NodeConfig, Role
from coordinator.paxos.types import (
    NOOP,
    Accept,
    Accepted,
    Ballot,
    Batch,
    Command,
    DurableState,
    Heartbeat,
    InstallSnapshot,
    Learn,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    SlotValue,
    Snapshot,
)
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import KVMachine, read_query, write_command


def put(cid: str, seq: int, key: str, value: str) -> Command:
    return Command(cid, seq, write_command("put", key, value))


def append(cid: str, seq: int, key: str, value: str) -> Command:
    return Command(cid, seq, write_command("append", key, value))


def role_of(n: Node) -> Role:
    """Re-reads the role (mypy narrows `n.role` across the calls that change it)."""
    return n.role


def lone_node(node_id: int = 1) -> Node:
    cfg = NodeConfig(node_id=node_id, peers=(1, 2, 3))
    return Node(cfg, DurableState(), KVMachine(), random.Random(0))


# ------------------------------------------------------------------------------ election


def test_config_rejects_even_clusters_and_unknown_ids() -> None:
    with pytest.raises(ConfigError):
        NodeConfig(node_id=1, peers=(1, 2)).validate()
    with pytest.raises(ConfigError):
        NodeConfig(node_id=4, peers=(1, 2, 3)).validate()


def test_timeout_first_asks_for_pre_votes_and_persists_nothing() -> None:
    n = lone_node()
    while n.role is Role.FOLLOWER:
        n.tick()
    rd = n.ready()
    assert n.role is Role.PRE_CANDIDATE
    assert rd.persist is None
    assert rd.messages == (PreVote(1, 2, Ballot(1, 1)), PreVote(1, 3, Ballot(1, 1)))


def test_a_granted_pre_vote_starts_phase1_for_all_slots_after_persisting_own_promise() -> None:
    n = lone_node()
    while n.role is Role.FOLLOWER:
        n.tick()
    n.ready()
    n.step(PreVoteReply(2, 1, Ballot(1, 1), True, Ballot(0, 0)))
    rd = n.ready()
    assert n.role is Role.CANDIDATE
    assert rd.persist is not None and rd.persist.promised == Ballot(1, 1)
    assert rd.messages == (Prepare(1, 2, Ballot(1, 1), 1), Prepare(1, 3, Ballot(1, 1), 1))


def test_a_refused_pre_vote_leaves_the_ballot_alone_however_often_it_times_out() -> None:
    n = lone_node()
    for _ in range(20 * n.config.election_ticks):
        n.tick()
        for m in n.ready().messages:
            assert isinstance(m, PreVote)
            n.step(PreVoteReply(m.dst, 1, m.ballot, False, Ballot(0, 0)))
    assert n.role is Role.PRE_CANDIDATE
    assert n.acceptor.promised == Ballot(0, 0)


def test_pre_vote_ballot_exceeds_every_promise_the_replies_report() -> None:
    n = lone_node()
    while n.role is Role.FOLLOWER:
        n.tick()
    n.ready()
    n.step(PreVoteReply(3, 1, Ballot(1, 1), False, Ballot(7, 2)))
    n.step(PreVoteReply(2, 1, Ballot(1, 1), True, Ballot(0, 0)))
    assert n.role is Role.CANDIDATE and n.ballot == Ballot(8, 1)


def test_followers_refuse_pre_votes_while_they_hear_a_live_leader_and_grant_after() -> None:
    n = lone_node(2)
    n.step(Heartbeat(1, 2, Ballot(1, 1), 0, 1))
    n.ready()
    n.step(PreVote(3, 2, Ballot(2, 3)))
    assert n.ready().messages == (PreVoteReply(2, 3, Ballot(2, 3), False, n.acceptor.promised),)
    for _ in range(n.config.election_ticks):
        n.tick()
    n.ready()
    n.step(PreVote(3, 2, Ballot(2, 3)))
    out = [m for m in n.ready().messages if isinstance(m, PreVoteReply)]
    before = n.acceptor.promised
    assert out == [PreVoteReply(2, 3, Ballot(2, 3), True, before)]
    assert n.acceptor.promised == before < Ballot(2, 3)  # granting a pre-vote promises nothing


def test_majority_of_promises_makes_a_leader_that_announces_itself() -> None:
    n = lone_node()
    for _ in range(2 * n.config.election_ticks):
        n.tick()
    n.ready()
    n.step(PreVoteReply(2, 1, Ballot(1, 1), True, Ballot(0, 0)))
    n.ready()
    n.step(Promise(2, 1, Ballot(1, 1), 1, (), None))
    assert n.is_leader
    out = n.ready().messages
    assert [type(m) for m in out] == [Heartbeat, Heartbeat]


def test_follower_does_not_campaign_while_it_hears_a_live_leader() -> None:
    n = lone_node(2)
    leader = Ballot(1, 1)
    for t in range(100):
        n.tick()
        if t % 2 == 0:
            n.step(Heartbeat(1, 2, leader, 0, t))
    assert n.role is Role.FOLLOWER and n.leader_id == 1


def test_a_leader_nacked_by_a_higher_promise_re_runs_phase_1_above_it_at_once() -> None:
    c = LocalCluster()
    c.elect(1)
    old = c.nodes[1]
    old.step(Nack(3, 1, Ballot(1, 1), Ballot(2, 2)))
    assert old.role is Role.CANDIDATE
    assert old.lead is not None and old.lead.ballot == Ballot(3, 1)
    c.deliver_all()
    assert old.is_leader and old.ballot == Ballot(3, 1)


def test_higher_ballot_candidate_deposes_a_leader_that_went_silent() -> None:
    c = LocalCluster()
    c.elect(1)
    c.elect(2)
    assert not c.nodes[1].is_leader and c.nodes[2].is_leader


def test_a_pre_candidate_is_refused_while_the_leader_hears_a_quorum_and_changes_nothing() -> None:
    """Pre-vote: a node that times out early (restart, starved loop) asks first; the leader
    and the followers that hear it refuse, so no ballot moves and the leader keeps leading."""
    c = LocalCluster()
    c.elect(1)
    c.tick(2)
    ballot = c.nodes[1].ballot
    rogue = c.nodes[3]
    rogue._elapsed = rogue._timeout - 1
    rogue.tick()
    assert rogue.role is Role.PRE_CANDIDATE
    c.deliver_all()
    assert role_of(rogue) is not Role.CANDIDATE and rogue.acceptor.promised <= Ballot(1, 1)
    c.tick(4)
    assert c.nodes[1].is_leader and c.nodes[1].ballot == ballot
    assert role_of(rogue) is Role.FOLLOWER and rogue.leader_id == 1


def test_a_candidate_cannot_depose_a_leader_that_still_hears_a_quorum() -> None:
    """Leader stickiness (without pre-vote, as before it existed): a node that restarts and
    campaigns at once is ignored by the leader and by followers that hear the leader."""
    c = LocalCluster(pre_vote=False)
    c.elect(1)
    c.tick(2)
    rogue = c.nodes[3]
    rogue._elapsed = rogue._timeout - 1
    rogue.tick()  # campaigns at a higher ballot
    assert rogue.role is Role.CANDIDATE
    c.deliver_all()
    assert c.nodes[1].is_leader and c.nodes[2].leader_id == 1
    # The leader's next messages are refused by the rogue's higher promise; the leader then
    # moves above it and the rogue follows again.
    c.tick(4)
    assert c.nodes[1].is_leader and c.nodes[3].leader_id == 1
    assert c.nodes[1].ballot is not None and c.nodes[1].ballot > Ballot(1, 3)


def test_prepare_with_lower_ballot_gets_a_nack_naming_the_promise() -> None:
    n = lone_node(2)
    n.step(Prepare(3, 2, Ballot(5, 3), 1))
    n.ready()
    n.step(Prepare(1, 2, Ballot(4, 1), 1))
    assert n.ready().messages == (Nack(2, 1, Ballot(4, 1), Ballot(5, 3)),)


# ----------------------------------------------------------------------------- commands


def test_proposal_is_chosen_applied_everywhere_and_answered_once() -> None:
    c = LocalCluster()
    c.elect(1)
    c.propose(1, put("a", 1, "k", "v"))
    assert [(r.client_id, r.seq, r.ok, r.result) for r in c.results] == [("a", 1, True, b"ok")]
    c.tick(4)  # heartbeats carry the commit index to followers
    for i in c.ids:
        assert c.nodes[i].machine.app.query(b"k") == b"v"
        assert [sv.slot for sv in c.applied[i]] == [1]


def test_follower_redirects_proposals_to_the_leader() -> None:
    c = LocalCluster()
    c.elect(2)
    c.propose(1, put("a", 1, "k", "v"))
    (res,) = c.results
    assert not res.ok and res.error == "not_leader" and res.leader_hint == 2


def test_retried_command_is_applied_at_most_once_and_answered_with_first_result() -> None:
    c = LocalCluster()
    c.elect(1)
    c.propose(1, append("a", 1, "k", "x"))
    c.propose(1, append("a", 1, "k", "x"))  # client retry after a lost answer
    assert [r.result for r in c.results] == [b"x", b"x"]
    assert c.nodes[1].machine.app.query(b"k") == b"x"


def test_batching_puts_many_commands_in_one_slot() -> None:
    c = LocalCluster(max_batch=64)
    c.elect(1)
    for seq in range(1, 11):
        c.nodes[1].propose(put("a", seq, "k", str(seq)))
    c.deliver_all()
    assert len(c.results) == 10
    assert len(c.applied[1]) == 1 and len(c.applied[1][0].value.commands) == 10


def test_window_bounds_slots_in_flight() -> None:
    c = LocalCluster(max_batch=1, window=2)
    c.elect(1)
    for seq in range(1, 6):
        c.nodes[1].propose(put("a", seq, "k", str(seq)))
    rd = c.nodes[1].ready()
    opened = {sv.slot for m in rd.messages if isinstance(m, Accept) for sv in m.entries}
    assert opened == {1, 2}


# ----------------------------------------------------------------------- leader change


def test_new_leader_adopts_value_accepted_by_a_minority_and_fills_gaps_with_noops() -> None:
    c = LocalCluster()
    c.elect(1)
    # slot 1 reaches nobody but n1; slot 2 reaches n2 only.
    c.nodes[1].propose(put("a", 1, "k", "lost"))
    c.flush(1)
    c.inflight.clear()
    c.nodes[1].propose(put("a", 2, "k", "kept"))
    c.flush(1)
    c.inflight = [m for m in c.inflight if isinstance(m, Accept) and m.dst == 2]
    c.deliver_all(keep=lambda m: isinstance(m, Accepted))
    c.inflight.clear()
    c.crash(1)
    c.elect(3)
    c.tick(4)
    chosen = {sv.slot: sv.value for sv in c.applied[3]}
    assert chosen[1] == NOOP
    assert [cmd.seq for cmd in chosen[2].commands] == [2]
    assert c.nodes[2].machine.app.query(b"k") == b"kept"


def test_leader_ignores_learn_and_snapshot_from_others() -> None:
    c = LocalCluster()
    c.elect(1)
    n = c.nodes[1]
    n.step(Learn(2, 1, Ballot(9, 2), ()))
    n.step(InstallSnapshot(2, 1, Ballot(0, 2), Snapshot(5, b"must never be restored")))
    assert n.is_leader and n.applied == 0


# ------------------------------------------------------------------------------- reads


def test_read_waits_for_a_quorum_heartbeat_round_started_after_it() -> None:
    c = LocalCluster()
    c.elect(1)
    c.propose(1, put("a", 1, "k", "v"))
    c.nodes[1].read(7, read_query("k"))
    c.flush(1)
    assert c.reads == []  # not before peers confirmed leadership
    c.deliver_all()
    assert [(r.read_id, r.ok, r.value) for r in c.reads] == [(7, True, b"v")]


def test_isolated_leader_never_serves_a_read() -> None:
    c = LocalCluster()
    c.elect(1)
    c.propose(1, put("a", 1, "k", "old"))
    c.cut = {(1, 2), (1, 3), (2, 1), (3, 1)}
    c.nodes[1].read(1, read_query("k"))
    c.elect(2)
    c.propose(2, put("a", 2, "k", "new"))
    c.tick(3)
    assert all(r.read_id != 1 or not r.ok for r in c.reads)


def test_read_on_follower_is_refused_with_hint() -> None:
    c = LocalCluster()
    c.elect(3)
    c.nodes[1].read(1, read_query("k"))
    c.flush(1)
    assert [(r.ok, r.error, r.leader_hint) for r in c.reads] == [(False, "not_leader", 3)]


# ------------------------------------------------------------------ catch-up & snapshot


def test_restarted_follower_catches_up_through_learn() -> None:
    c = LocalCluster(snapshot_every=0)
    c.elect(1)
    c.crash(3)
    for seq in range(1, 6):
        c.propose(1, put("a", seq, "k", str(seq)))
    c.start(3)
    c.tick(6)
    assert c.nodes[3].applied == c.nodes[1].commit_index == 5
    assert c.nodes[3].machine.app.query(b"k") == b"5"


def test_follower_behind_truncation_point_installs_snapshot() -> None:
    c = LocalCluster(snapshot_every=3, max_batch=1)
    c.elect(1)
    c.crash(3)
    for seq in range(1, 11):
        c.propose(1, put("a", seq, "k", str(seq)))
    assert c.nodes[1].snap_index >= 9
    c.start(3)
    c.tick(6)
    assert c.nodes[3].applied == 10
    assert c.nodes[3].machine.app.query(b"k") == b"10"
    assert c.nodes[3].machine.sessions["a"][0] == 10  # sessions travel in snapshots


def test_candidate_behind_a_snapshot_recovers_it_in_phase1() -> None:
    c = LocalCluster(snapshot_every=2, max_batch=1)
    c.elect(1)
    c.crash(3)
    for seq in range(1, 6):
        c.propose(1, put("a", seq, "k", str(seq)))
    c.crash(1)
    c.start(3)
    c.elect(3)  # n3 knows nothing; n2's promise carries its snapshot
    c.propose(3, put("b", 1, "k", "after"))
    assert c.nodes[3].machine.app.query(b"k") == b"after"
    assert c.nodes[3].machine.sessions["a"][0] == 5


def test_crash_loses_only_what_was_not_handed_to_storage() -> None:
    c = LocalCluster()
    n2 = c.nodes[2]
    n2.step(Prepare(1, 2, Ballot(3, 1), 1))
    c.crash(2)  # the promise never reached storage: it was never sent either
    c.start(2)
    assert c.nodes[2].acceptor.promised == Ballot(0, 0)
    c.nodes[2].step(Prepare(1, 2, Ballot(3, 1), 1))
    c.flush(2)
    c.crash(2)
    c.start(2)
    assert c.nodes[2].acceptor.promised == Ballot(3, 1)


def test_messages_never_leave_before_their_state_is_durable() -> None:
    """Every Promise/Accepted in a Ready is backed by that Ready's persist (or earlier ones)."""
    c = LocalCluster(max_batch=2, snapshot_every=4)
    sent: list[tuple[Message, DurableState]] = []
    original = c.flush

    def checking_flush(i: int) -> None:
        node = c.nodes[i]
        while node.has_ready():
            rd = node.ready()
            if rd.persist is not None:
                c.storage[i].save(rd.persist)
            durable = c.storage[i].load()
            sent.extend((m, durable) for m in rd.messages)
            c.inflight.extend(rd.messages)
            node.advance(rd)

    c.flush = checking_flush  # type: ignore[method-assign]
    c.elect(1)
    for seq in range(1, 12):
        c.propose(1, put("a", seq, "k", str(seq)))
    c.elect(2)
    c.propose(2, put("a", 12, "k", "x"))
    c.flush = original  # type: ignore[method-assign]
    checked = 0
    for m, durable in sent:
        if isinstance(m, Promise):
            assert durable.promised >= m.ballot
            checked += 1
        elif isinstance(m, Accepted):
            floor = durable.snapshot.index if durable.snapshot else 0
            have = {e.slot: e.ballot for e in durable.accepted}
            for slot in m.slots:
                assert slot <= floor or have.get(slot, Ballot(0, 0)) >= m.ballot
            checked += 1
    assert checked > 10


# --------------------------------------------------------------------- apply budget
# (slots' command counts, apply_budget, applied index after each advance)
APPLY_BUDGET_CASES = [
    ("no budget: every chosen slot at once", [1, 1, 1, 1, 1], 0, [5]),
    ("two commands an advance", [1, 1, 1, 1, 1], 2, [2, 4, 5]),
    ("a slot bigger than the budget is split", [1, 5, 1], 2, [1, 1, 2, 3]),
    ("a split slot's end and the next slot share an advance", [3, 1, 1], 2, [0, 2, 3]),
    ("no-ops before the budget is spent cost nothing", [0, 0, 2, 0, 1], 2, [3, 5]),
]


@pytest.mark.parametrize(("name", "sizes", "budget", "applied_after"), APPLY_BUDGET_CASES)
def test_chosen_slots_are_applied_within_the_apply_budget(
    name: str, sizes: list[int], budget: int, applied_after: list[int]
) -> None:
    """A driver on one event loop applies a whole Ready without a break; with a budget each
    `advance` applies a few commands (NodeConfig.apply_budget), splitting a big slot, in
    order, each command exactly once, and `apply_pending` tells the driver more wait."""
    cfg = NodeConfig(node_id=2, peers=(1, 2, 3), apply_budget=budget)
    n = Node(cfg, DurableState(), KVMachine(), random.Random(0))
    b = Ballot(1, 1)
    entries = tuple(
        SlotValue(s, Batch(tuple(append(f"c{s}", i + 1, "k", f"{s}.{i},") for i in range(size))))
        for s, size in enumerate(sizes, start=1)
    )
    n.step(Accept(1, 2, b, entries, 0))
    n.ready()
    n.step(Heartbeat(1, 2, b, len(sizes), 1))
    seen: list[int] = []
    while n.has_ready():
        rd = n.ready()
        n.advance(rd)
        if rd.committed or seen:
            seen.append(n.applied)
        assert n.apply_pending == (n.applied < len(sizes)), name
    assert seen == applied_after, name
    want = "".join(f"{s}.{i}," for s, size in enumerate(sizes, start=1) for i in range(size))
    assert n.machine.app.data.get("k", "") == want, name  # every command once, in order


def test_no_snapshot_is_taken_in_the_middle_of_a_slot() -> None:
    """A snapshot claims `applied`; taken while part of the next slot is applied it would
    hold those commands too, and a node restored from it would apply them again. Here the
    first advance applies slot 1 and one command of slot 2, so `applied - snap_index` reaches
    `snapshot_every` in the middle of slot 2."""
    cfg = NodeConfig(node_id=2, peers=(1, 2, 3), apply_budget=2, snapshot_every=1)
    n = Node(cfg, DurableState(), KVMachine(), random.Random(0))
    b = Ballot(1, 1)
    slot2 = Batch(tuple(append("c", i + 2, "k", f"2.{i},") for i in range(3)))
    entries = (SlotValue(1, Batch((append("c", 1, "k", "1.0,"),))), SlotValue(2, slot2))
    n.step(Accept(1, 2, b, entries, 0))
    n.ready()
    n.step(Heartbeat(1, 2, b, 2, 1))
    states: dict[int, str] = {}
    while n.has_ready():
        n.advance(n.ready())
        snap = n.acceptor.snapshot
        if snap is not None:
            restored = KVMachine()
            Node(cfg, DurableState(), restored, random.Random(0)).machine.restore(snap.data)
            states[snap.index] = restored.data.get("k", "")
    assert states == {2: "1.0,2.0,2.1,2.2,"}


@pytest.mark.parametrize(("stop_after", "want"), [(0, [1, 2, 3, 4]), (2, [2, 4]), (9, [4])])
def test_the_driver_says_when_an_advance_has_applied_enough(
    stop_after: int, want: list[int]
) -> None:
    """The runtime passes a clock (`enough()` after 20 ms); at least one command is applied
    per advance, so a slow command never stops progress."""
    n = Node(NodeConfig(node_id=2, peers=(1, 2, 3)), DurableState(), KVMachine(), random.Random(0))
    b = Ballot(1, 1)
    batch = Batch(tuple(append("c", i + 1, "k", f"{i},") for i in range(4)))
    n.step(Accept(1, 2, b, (SlotValue(1, batch),), 0))
    n.ready()
    n.step(Heartbeat(1, 2, b, 1, 1))
    seen = []
    while n.has_ready():
        calls = 0

        def enough() -> bool:
            nonlocal calls
            calls += 1
            return calls >= stop_after

        n.advance(n.ready(), enough)
        seen.append(len(n.machine.app.data.get("k", "").split(",")) - 1)
    assert seen == want
    assert n.applied == 1 and n.machine.app.data["k"] == "0,1,2,3,"
