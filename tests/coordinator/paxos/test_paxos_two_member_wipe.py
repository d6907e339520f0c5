"""A configuration of two members survives the loss of one member's disk (issue 17e, the
seed-42 liveness stall of the planted-read-bug search with pre-vote).

The stall: a removal shrank the cluster to {1, 3}, then n3's disk was replaced. n3 rejoined
as a floor learner: it answers no Prepare and, before the fix, no PreVote and no Accept until a
leader above its floor has caught it up. But in {1, 3} every majority is both nodes, so no
leader could be elected without n3, and n3 could not be admitted without a leader: stuck for
good. Two rules break the cycle (docs/architecture.md, 2, "Reconfiguration"):

* phase 1 needs promises from a set that meets every phase-2 quorum (a majority), i.e.
  `len - majority + 1` members: the majority for an odd size, half for an even one (so n1 alone
  in {1, 3}: whatever was chosen in {1, 3} was accepted by n1);
* a learner grants pre-votes, and accepts (without promising) in ballots above its floor, so
  the leader can choose the values its recovery target names with it; it still promises and
  campaigns only once it holds that target, durably.
"""

from __future__ import annotations

import pytest

from coordinator.paxos.membership import remove_node_command
from coordinator.paxos.storage import MemoryStorage
from coordinator.paxos.types import Accepted, Command, Message
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import write_command


def put(seq: int, value: str) -> Command:
    return Command("w", seq, write_command("put", "k", value))


def shrink_to_two(seed: int) -> LocalCluster:
    """{1, 2, 3} -> {1, 3} through a chosen removal, in effect on the leader n1."""
    c = LocalCluster(3, seed=seed, alpha=4, snapshot_every=0)
    c.elect(1)
    c.propose(1, put(1, "a"))
    c.propose(1, Command("op", 1, remove_node_command(2)))
    n1 = c.nodes[1]
    for _ in range(50):
        if n1.membership.at(n1.first_unchosen) == (1, 3):
            break
        c.tick()
    assert n1.membership.at(n1.first_unchosen) == (1, 3)
    c.crash(2)  # removed and shut down, as an operator would
    return c


def wipe(c: LocalCluster, i: int) -> None:
    """Replace i's disk: it restarts empty, its floor the highest ballot anyone else promised."""
    c.crash(i)
    c.storage[i] = MemoryStorage()
    c.applied[i] = []
    floor = max(st.load().promised for j, st in c.storage.items() if j != i)
    c.start(i, floor)


def committed(c: LocalCluster, seq: int) -> bool:
    return any(r.client_id == "w" and r.seq == seq and r.ok for r in c.results)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("unchosen_tail", [False, True], ids=["all-chosen", "unchosen-tail"])
def test_a_two_member_configuration_elects_and_admits_a_wiped_member(
    seed: int, unchosen_tail: bool
) -> None:
    c = shrink_to_two(seed)
    if unchosen_tail:
        # n1 accepts a value that n3 never confirms: after the wipe n1's recovery target lies
        # above its commit index, and only n3's vote (as a learner) can get that slot chosen.
        def from_n3(m: Message) -> bool:
            return isinstance(m, Accepted) and m.src == 3

        c.nodes[1].propose(put(2, "b"))
        c.deliver_all(keep=from_n3)
        c.inflight = []
        assert not committed(c, 2)
    wipe(c, 3)
    c.crash(1)  # and the leader restarts: nobody leads, n3 is a learner
    c.start(1)
    c.inflight = []
    for _ in range(400):
        c.tick()
        lead = c.leader()
        if lead is not None and c.nodes[3].voter and lead.serving:
            break
    lead = c.leader()
    assert lead is not None, "no leader in {1, 3} with n3's disk replaced"
    assert c.nodes[3].voter, "the wiped member was never admitted"
    c.propose(lead.id, put(3, "c"))
    c.tick(5)
    assert committed(c, 3)
    # Both members applied the same log, including what was chosen before the wipe.
    n1, n3 = c.nodes[1], c.nodes[3]
    assert n1.applied == n3.applied and n1.machine.app.query(b"k") == n3.machine.app.query(b"k")
    assert n1.machine.app.query(b"k") == b"c"
