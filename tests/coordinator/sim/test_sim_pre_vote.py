"""Pre-vote and check-quorum (docs/architecture.md, 2, "Pre-vote and check-quorum"): a node
that cannot reach a quorum, or hears its leader late, no longer raises its ballot and so no
longer forces a healthy leader through a new phase 1. Seeds replay."""

from __future__ import annotations

import pytest

from coordinator.paxos.node import Role
from coordinator.sim.harness import LocalCluster
from coordinator.sim.scenarios import spurious_elections


def partition_and_rejoin(pre_vote: bool, seed: int) -> LocalCluster:
    """n1 leads; n3 is cut off for twenty election timeouts, then the network heals."""
    c = LocalCluster(seed=seed, pre_vote=pre_vote)
    c.elect(1)
    c.tick(4)
    c.cut = {(3, j) for j in (1, 2)} | {(j, 3) for j in (1, 2)}
    c.tick(20 * c.nodes[3].config.election_ticks)
    c.cut = set()
    c.tick(3 * c.nodes[3].config.election_ticks)
    return c


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_partitioned_then_rejoining_node_does_not_disrupt_a_stable_leader(seed: int) -> None:
    c = LocalCluster(seed=seed)
    c.elect(1)
    ballot = c.nodes[1].ballot
    c = partition_and_rejoin(True, seed)
    n3 = c.nodes[3]
    assert n3.acceptor.promised <= c.nodes[1].acceptor.promised  # never raised its ballot
    assert c.nodes[1].is_leader and c.nodes[1].ballot == ballot
    assert n3.role is Role.FOLLOWER and n3.leader_id == 1
    assert n3.commit_index == c.nodes[1].commit_index


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_without_pre_vote_the_same_rejoin_forces_a_new_ballot(seed: int) -> None:
    """The behaviour pre-vote removes, kept as a reference (NodeConfig.pre_vote=False)."""
    first = LocalCluster(seed=seed)
    first.elect(1)
    c = partition_and_rejoin(False, seed)
    leader = c.leader()
    assert leader is not None and leader.ballot is not None
    assert leader.ballot > first.nodes[1].ballot  # type: ignore[operator]


def test_pre_vote_removes_spurious_elections_when_a_node_hears_its_leader_late() -> None:
    """Fault-free runs; every 3,000 units node N reads nothing for 2,000 units (longer than
    an election timeout) though it is alive and connected. Without pre-vote each such gap
    becomes a ballot bump that the leader must answer with a new phase 1."""
    old, new = spurious_elections(range(2), (2000,), run_end=20_000)
    assert not old.pre_vote and new.pre_vote
    assert old.safety_violations == 0 and new.safety_violations == 0
    assert new.elections * 3 <= old.elections, (old.line(), new.line())
