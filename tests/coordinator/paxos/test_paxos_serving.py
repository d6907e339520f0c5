"""`Node.serving`: a leader may decide from its own replica only once it has applied every slot
a predecessor may have chosen (issue 11, item 1). Scenarios replay from their seeds."""

from __future__ import annotations

import pytest

from coordinator.paxos.node import Role
from coordinator.paxos.types import Command, Prepare, Promise
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import write_command

SEEDS = [0, 1, 7, 42]


def put(seq: int, value: str) -> Command:
    return Command("a", seq, write_command("put", "k", value))


def cluster_where_n2_missed_the_last_commit(seed: int, writes: int) -> LocalCluster:
    """n1 leads and gets `writes` commands chosen; n2 accepted them all but never heard the
    commit index of the last one (no heartbeat since), so its replica is one slot behind."""
    # These scenarios script phase 1 message by message; pre-vote (test_paxos_node.py) would
    # add a round trip in front that changes nothing about serving.
    c = LocalCluster(seed=seed, max_batch=1, pre_vote=False)
    c.elect(1)
    for seq in range(1, writes + 1):
        c.propose(1, put(seq, f"v{seq}"))
    assert c.nodes[2].applied == writes - 1
    return c


def campaign_with_promise_from_n3_only(c: LocalCluster) -> None:
    """n1 went silent; n2 campaigns and wins with n3's promise, nothing else delivered."""
    c.crash(1)
    n2 = c.nodes[2]
    n2._elapsed = n2._timeout - 1
    c.nodes[3]._elapsed = c.nodes[3].config.election_ticks  # n3 stopped hearing n1 too
    n2.tick()
    c.flush(2)
    prepares = [m for m in c.inflight if isinstance(m, Prepare) and m.dst == 3]
    c.inflight = []
    for prepare in prepares:
        c.nodes[3].step(prepare)
    c.flush(3)
    promises = [m for m in c.inflight if isinstance(m, Promise) and m.dst == 2]
    c.inflight = []
    for promise in promises:
        n2.step(promise)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("writes", [1, 3])
def test_a_freshly_elected_leader_is_not_serving_until_it_applied_its_recovery_target(
    seed: int, writes: int
) -> None:
    c = cluster_where_n2_missed_the_last_commit(seed, writes)
    campaign_with_promise_from_n3_only(c)
    n2 = c.nodes[2]
    assert n2.is_leader
    assert n2.lead is not None and n2.lead.recovery_target == writes
    assert n2.applied < n2.lead.recovery_target
    assert not n2.serving  # elected, but a predecessor's chosen command is not applied yet

    c.deliver_all()  # its re-proposals of the open slots are chosen and applied

    assert n2.applied >= n2.lead.recovery_target
    assert n2.serving
    assert n2.machine.app.query(b"k") == f"v{writes}".encode()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_leader_with_nothing_to_recover_serves_once_its_phase_1_is_done(seed: int) -> None:
    c = LocalCluster(seed=seed)
    c.elect(1)
    assert c.nodes[1].serving


@pytest.mark.parametrize("seed", SEEDS)
def test_followers_candidates_and_deposed_leaders_are_never_serving(seed: int) -> None:
    c = LocalCluster(seed=seed, pre_vote=False)
    c.elect(1)
    c.propose(1, put(1, "x"))
    c.tick(4)
    assert [c.nodes[i].serving for i in c.ids] == [True, False, False]

    c.cut = {(i, j) for i in c.ids for j in c.ids}  # n3 campaigns, nobody answers
    n3 = c.nodes[3]
    n3._elapsed = n3._timeout - 1
    n3.tick()
    c.flush(3)
    assert n3.role is Role.CANDIDATE and not n3.serving

    c.cut = set()
    c.elect(2)
    assert [c.nodes[i].serving for i in c.ids] == [False, True, False]
    assert not c.nodes[1].is_leader
