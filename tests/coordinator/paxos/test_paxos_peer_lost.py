"""Fast fail-over on a closed link (issue 17e): the driver tells the core that a peer's end
of the connection closed (`Node.peer_lost`). For the leader this means its process died; the
followers pre-vote within a few ticks instead of an election timeout. It is a hint, not a
vote: while the leader is alive, pre-vote refuses the follower and no ballot is raised."""

from __future__ import annotations

import pytest

from coordinator.paxos.node import Role
from coordinator.paxos.types import Command, Heartbeat
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import write_command

ELECTION = 10
HEARTBEAT = 2


def put(seq: int) -> Command:
    return Command("w", seq, write_command("put", "k", str(seq)))


def cluster(seed: int) -> LocalCluster:
    c = LocalCluster(3, seed=seed, election_ticks=ELECTION, heartbeat_ticks=HEARTBEAT)
    c.elect(1)
    c.propose(1, put(1))
    c.tick(HEARTBEAT)
    return c


@pytest.mark.parametrize("seed", range(6))
def test_followers_that_lose_the_leaders_link_elect_within_a_few_ticks(seed: int) -> None:
    c = cluster(seed)
    c.crash(1)
    for i in (2, 3):
        c.nodes[i].peer_lost(1)
    ticks = 0
    while c.leader() is None:
        c.tick()
        ticks += 1
        assert ticks < ELECTION, "waited out the election timeout"
    lead = c.leader()
    assert lead is not None and lead.id in (2, 3)
    c.propose(lead.id, put(2))
    c.tick(HEARTBEAT)
    assert any(r.seq == 2 and r.ok for r in c.results)


def test_without_the_hint_the_followers_wait_for_the_election_timeout() -> None:
    c = cluster(0)
    c.crash(1)
    ticks = 0
    while c.leader() is None:
        c.tick()
        ticks += 1
    assert ticks >= ELECTION


@pytest.mark.parametrize("seed", range(4))
def test_a_closed_link_to_a_live_leader_raises_no_ballot(seed: int) -> None:
    c = cluster(seed)
    promised = {i: c.storage[i].load().promised for i in c.ids}
    c.nodes[2].peer_lost(1)  # e.g. the link was reset, the leader runs on
    c.tick(3 * ELECTION)
    lead = c.leader()
    assert lead is not None and lead.id == 1
    assert {i: c.storage[i].load().promised for i in c.ids} == promised
    assert c.nodes[2].role is Role.FOLLOWER and c.nodes[2].leader_id == 1


def test_a_lost_link_to_a_follower_changes_nothing() -> None:
    c = cluster(0)
    n3 = c.nodes[3]
    timeout, elapsed = n3._timeout, n3._elapsed
    n3.peer_lost(2)
    assert (n3._timeout, n3._elapsed, n3.role) == (timeout, elapsed, Role.FOLLOWER)
    c.nodes[1].peer_lost(2)  # the leader: nothing to do either
    assert c.nodes[1].is_leader


@pytest.mark.parametrize("seed", range(4))
def test_frames_the_dead_leader_sent_before_the_close_do_not_restart_the_countdown(
    seed: int,
) -> None:
    """Heartbeats in flight when the leader died arrive after the close was seen (found by
    the simulator: they reset the countdown, and the hint saved nothing)."""
    c = cluster(seed)
    for _ in range(HEARTBEAT):
        c.nodes[1].tick()
    c.flush(1)
    stale = [m for m in c.inflight if m.src == 1]
    assert stale, "the leader sent nothing to hold back"
    c.inflight = [m for m in c.inflight if m.src != 1]
    c.crash(1)
    for i in (2, 3):
        c.nodes[i].peer_lost(1)
    for m in stale:
        c.nodes[m.dst].step(m)
    ticks = 0
    while c.leader() is None:
        c.tick()
        ticks += 1
        assert ticks < ELECTION, "the stale frames restarted the election countdown"


@pytest.mark.parametrize("seed", range(4))
def test_a_follower_that_saw_the_close_first_grants_the_one_that_sees_it_later(seed: int) -> None:
    """On a busy machine the two followers see the close far apart. The first pre-votes, is
    refused (the other still hears the leader), then a stale heartbeat reaches it; when the
    second sees the close and pre-votes, the first must grant at once, not refuse for an
    election timeout because it 'heard' the dead leader (seen on real processes)."""
    c = cluster(seed)
    ballot = c.nodes[1].ballot
    assert ballot is not None
    c.crash(1)
    n2, n3 = c.nodes[2], c.nodes[3]
    n2.peer_lost(1)
    for _ in range(HEARTBEAT + 1):
        c.tick()
    assert n2.role is Role.PRE_CANDIDATE and c.leader() is None  # refused by n3
    n2.step(Heartbeat(1, 2, ballot, n2.commit_index, 99, 0))  # in flight when n1 died
    c.deliver_all()
    n3.peer_lost(1)
    ticks = 0
    while c.leader() is None:
        c.tick()
        ticks += 1
        assert ticks < ELECTION, "a follower refused the other for an election timeout"
