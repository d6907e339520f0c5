"""Property: under any interleaving hypothesis can find (reordering, loss, duplication,
crashes, competing candidates), no two replicas apply different values at the same slot."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.paxos.leader import merge_promises
from coordinator.paxos.types import AcceptedEntry, Ballot, Batch, Command, Promise
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import write_command

actions = st.lists(
    st.tuples(
        st.sampled_from(["deliver"] * 6 + ["drop", "dup", "propose", "propose", "crash",
                         "campaign"]),
        st.integers(0, 1000),
    ),
    min_size=20,
    max_size=200,
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions, st.integers(0, 2**16))
def test_agreement_under_arbitrary_interleavings(script: list[tuple[str, int]], seed: int) -> None:
    c = LocalCluster(n=3, seed=seed, snapshot_every=3, max_batch=2, window=3)
    seq = 0
    for action, k in script:
        c.flush_all()
        live = [i for i in c.ids if i not in c.down]
        if action in ("deliver", "drop", "dup") and c.inflight:
            m = c.inflight.pop(k % len(c.inflight))
            if action == "dup":
                c.inflight.append(m)
            if action != "drop" and m.dst not in c.down:
                c.nodes[m.dst].step(m)
        elif action == "tick" and live:
            c.nodes[live[k % len(live)]].tick()
        elif action == "propose" and live:
            seq += 1
            cmd = Command("c", seq, write_command("append", "k", f"{seq},"))
            c.nodes[live[k % len(live)]].propose(cmd)
        elif action == "crash":
            i = c.ids[k % len(c.ids)]
            if i in c.down:
                c.start(i)
            elif len(c.down) == 0:
                c.crash(i)
        elif action == "campaign" and live:
            n = c.nodes[live[k % len(live)]]
            n._elapsed = n._timeout - 1
            n.tick()
    c.flush_all()
    chosen: dict[int, Batch] = {}
    for i in c.ids:
        for sv in c.applied[i]:
            assert chosen.setdefault(sv.slot, sv.value) == sv.value, f"slot {sv.slot} diverged"


ballots = st.builds(Ballot, st.integers(0, 5), st.integers(1, 3))
values = st.builds(lambda n: Batch((Command("c", n, b""),)), st.integers(0, 50))
entries = st.lists(st.builds(AcceptedEntry, st.integers(1, 6), ballots, values), max_size=6)


@given(st.lists(entries, min_size=1, max_size=5), st.integers(1, 6))
def test_merge_picks_highest_ballot_value_per_slot(
    reports: list[list[AcceptedEntry]], start: int
) -> None:
    promises = [Promise(i, 0, Ballot(9, 0), start, tuple(r), None) for i, r in enumerate(reports)]
    merged = merge_promises(promises, start)
    every = [e for r in reports for e in r if e.slot >= start]
    assert set(merged) == {e.slot for e in every}
    for slot, value in merged.items():
        top = max(e.ballot for e in every if e.slot == slot)
        assert value in {e.value for e in every if e.slot == slot and e.ballot == top}
