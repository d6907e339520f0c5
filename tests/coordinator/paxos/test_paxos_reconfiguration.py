"""Reconfiguration in the pure core (docs/architecture.md, 2, "Reconfiguration"): the
membership is replicated, a change chosen at slot i counts from slot i + alpha, votes count in
their slot's configuration, phase 1 covers every configuration its recovery spans, removed
nodes stay quiet, and a node added with an empty disk votes only once it holds what the
admitting leader recovered."""

from __future__ import annotations

import json
import random

from coordinator.paxos.application import SessionMachine
from coordinator.paxos.membership import (
    Membership,
    add_node_command,
    remove_node_command,
    replace_node_command,
)
from coordinator.paxos.node import Node, NodeConfig, Role
from coordinator.paxos.types import (
    AcceptedEntry,
    Ballot,
    Batch,
    Command,
    DurableState,
    Heartbeat,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
)
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import KVMachine, write_command


def put(cid: str, seq: int, key: str, value: str) -> Command:
    return Command(cid, seq, write_command("put", key, value))


# ------------------------------------------------------------------------ the state itself


def test_membership_changes_take_effect_alpha_slots_after_they_are_chosen() -> None:
    m = Membership.initial((1, 2, 3), alpha=4)
    out = json.loads(m.apply(10, add_node_command(4, "h4:1")))
    assert out == {"ok": True, "detail": "chosen", "members": [1, 2, 3, 4], "effective_slot": 14}
    assert m.at(13) == (1, 2, 3) and m.at(14) == (1, 2, 3, 4)
    assert m.between(12, 20) == [(1, 2, 3), (1, 2, 3, 4)]
    json.loads(m.apply(11, replace_node_command(1, 5, "h5:1")))
    assert m.at(15) == (2, 3, 4, 5) and m.addresses == {4: "h4:1", 5: "h5:1"}
    m.prune(13)  # slot 14 onwards still needed
    assert m.configs[0] == (14, (1, 2, 3, 4)) and m.known() == {1, 2, 3, 4, 5}
    m.prune(20)
    assert m.configs == [(15, (2, 3, 4, 5))]
    assert Membership.from_json(m.to_json()) == m


def test_membership_commands_are_idempotent_and_ids_are_never_reused() -> None:
    m = Membership.initial((1, 2, 3), alpha=1)
    m.apply(1, add_node_command(4, "h:1"))
    assert json.loads(m.apply(2, add_node_command(4, "h:1")))["detail"] == "already a member"
    m.apply(3, remove_node_command(4))
    assert json.loads(m.apply(4, remove_node_command(4)))["detail"] == "not a member"
    again = json.loads(m.apply(5, add_node_command(4, "h:1")))
    assert again["ok"] is False and "use a new id" in again["detail"]
    m.apply(6, remove_node_command(1))
    m.apply(7, remove_node_command(2))
    last = json.loads(m.apply(8, remove_node_command(3)))
    assert last["ok"] is False and m.latest() == (3,)
    assert json.loads(m.apply(9, b"\x00paxos.reconfig\x00{"))["ok"] is False


def test_membership_travels_in_snapshots() -> None:
    a = SessionMachine(KVMachine(), Membership.initial((1, 2, 3), 8))
    a.apply(Command("op", 1, add_node_command(4, "h4:9")), slot=5)
    b = SessionMachine(KVMachine(), Membership.initial((1, 2, 3), 8))
    b.restore(a.snapshot())
    assert b.membership.at(13) == (1, 2, 3, 4) and b.membership.addresses == {4: "h4:9"}


def test_speculation_matches_what_applying_the_log_gives() -> None:
    """A candidate's view of future configurations applies the session check too: a retried
    membership command that the log will skip must not count."""
    sm = SessionMachine(KVMachine(), Membership.initial((1, 2, 3), 2))
    batches = [
        (1, Batch((Command("op", 1, add_node_command(4, "h")),))),
        (2, Batch((Command("op", 2, remove_node_command(4)),))),
        (3, Batch((Command("op", 1, add_node_command(4, "h")),))),  # stale retry
    ]
    spec = sm.speculate_membership(batches)
    for slot, batch in batches:
        for cmd in batch.commands:
            sm.apply(cmd, slot)
    assert spec == sm.membership and spec.latest() == (1, 2, 3)


# ----------------------------------------------------------------------------- the node


def test_grow_to_five_and_shrink_to_three_with_the_leader_removed() -> None:
    c = LocalCluster(3, seed=1, alpha=4, snapshot_every=0)
    c.elect(1)
    c.add_node(4)
    c.add_node(5)
    c.propose(1, Command("op", 1, add_node_command(4, "h4:1")))
    c.tick(5)
    c.propose(1, Command("op", 2, add_node_command(5, "h5:1")))
    c.tick(5)
    leader = c.nodes[1]
    assert leader.membership.at(leader.applied + 1) == (1, 2, 3, 4, 5)
    # The change took effect without client traffic (the leader filled the window with
    # no-ops), and the new nodes vote: a slot is chosen even with two founders down.
    c.crash(2)
    c.crash(3)
    c.propose(1, put("c", 1, "k", "v"))
    c.tick(5)
    assert any(r.client_id == "c" and r.ok for r in c.results)
    for i in (2, 3):
        c.start(i)
    c.tick(10)
    # Remove two founders, the leader among them: it hands off and a member leads.
    c.propose(1, Command("op", 3, remove_node_command(2)))
    c.tick(5)
    c.propose(1, Command("op", 4, remove_node_command(1)))
    c.tick(5)
    assert not c.nodes[1].is_leader
    for _ in range(60):
        if c.leader() is not None:
            break
        c.tick()
    new = c.leader()
    assert new is not None and new.id in (3, 4, 5)
    assert new.membership.at(new.applied + 1) == (3, 4, 5)
    # The removed nodes never campaign again.
    c.tick(80)
    assert c.nodes[1].role is Role.FOLLOWER and c.nodes[2].role is Role.FOLLOWER
    assert c.leader() is new
    top = new.commit_index
    for i in (3, 4, 5):
        assert c.nodes[i].commit_index == top
        assert [sv.value for sv in c.applied[i]][-1] == [sv.value for sv in c.applied[3]][-1]


def lone(node_id: int, alpha: int = 4) -> Node:
    cfg = NodeConfig(node_id=node_id, peers=(1, 2, 3), alpha=alpha)
    return Node(cfg, DurableState(), KVMachine(), random.Random(0))


def role_of(n: Node) -> Role:
    """Re-reads the role (mypy narrows `n.role` across the calls that change it)."""
    return n.role


def campaign(n: Node) -> Ballot:
    while n.role is not Role.PRE_CANDIDATE:
        n.tick()
    for m in n.ready().messages:  # a peer grants the pre-vote; then phase 1 starts
        if isinstance(m, PreVote) and m.dst == 2:
            n.step(PreVoteReply(2, n.id, m.ballot, True, Ballot(0, 0)))
    assert role_of(n) is Role.CANDIDATE
    n.ready()
    assert n.ballot is not None
    return n.ballot


def test_phase1_needs_a_majority_of_every_configuration_its_recovery_spans() -> None:
    """Node 1 recovers a slot holding `replace 3 by 4` (config {1,2,3} -> {1,2,4}) and later
    slots: {1, 3} is a majority of the old configuration but not of the new one, whose
    majority may have chosen slots node 3 never saw."""
    n = lone(1)
    b = campaign(n)
    replace = Command("op", 1, replace_node_command(3, 4, "h4:1"))
    accepted = tuple(
        [AcceptedEntry(1, Ballot(1, 2), Batch((replace,)))]
        + [AcceptedEntry(s, Ballot(1, 2), Batch()) for s in range(2, 8)]
    )
    n.step(Promise(3, 1, b, 1, accepted, None))
    assert n.role is Role.CANDIDATE  # a majority of {1,2,3}, not of {1,2,4}
    asked = [m for m in n.ready().messages if isinstance(m, Prepare)]
    assert [m.dst for m in asked] == [4]  # it asks the new configuration's node too
    n.step(Promise(4, 1, b, 1, (), None))
    assert n.is_leader


def test_phase1_in_a_single_configuration_needs_only_its_majority() -> None:
    n = lone(1)
    b = campaign(n)
    n.step(Promise(3, 1, b, 1, (), None))
    assert n.is_leader


def test_a_removed_node_does_not_campaign_and_its_prepares_are_ignored() -> None:
    c = LocalCluster(3, seed=2, alpha=2)
    c.elect(1)
    c.propose(1, Command("op", 1, remove_node_command(3)))
    c.tick(10)
    removed = c.nodes[3]
    assert 3 not in removed.membership.at(removed.first_unchosen)
    for _ in range(100):
        removed.tick()
    assert removed.role is Role.FOLLOWER
    member = c.nodes[2]
    member._elapsed = 10**6  # even with its leader silent for long
    member.step(Prepare(3, 2, Ballot(99, 3), 1))
    assert not member.ready().messages


def test_a_learner_votes_only_once_it_holds_the_leaders_recovery_target() -> None:
    cfg = NodeConfig(node_id=4, peers=(1, 2, 3), alpha=4)
    n = Node(cfg, DurableState(), KVMachine(), random.Random(0), floor=Ballot(5, 1))
    assert not n.voter
    # A leader above the floor that has chosen slot 0 but recovered up to slot 3.
    n.step(Heartbeat(1, 4, Ballot(6, 1), 0, 1, recovery=3))
    assert not n.voter
    rd = n.ready()
    assert [type(m).__name__ for m in rd.messages] == ["HeartbeatAck"]
    n.advance(rd)
    n.step(Heartbeat(1, 4, Ballot(6, 1), 0, 2, recovery=0))
    assert not n.voter  # the recovery target of this ballot is remembered
