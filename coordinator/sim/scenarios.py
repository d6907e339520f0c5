"""Scenario tables that compare protocol variants on the same seeded schedules.

`python -m coordinator.sim.scenarios` prints the spurious-election table recorded in
docs/benchmarks-coordinator.md ("Pre-vote"): fault-free runs in which one node reads its
leader's messages late, in bursts (`SimParams.slow_node_delay`), with and without pre-vote.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.sim.runner import run_seed

__all__ = ["ElectionRow", "spurious_elections"]


@dataclass(frozen=True, slots=True)
class ElectionRow:
    slow_node_delay: int
    pre_vote: bool
    elections: int  # ballot bumps over all seeds (the first election of each run included)
    pre_votes: int
    ops: int  # client operations completed
    safety_violations: int  # agreement / linearizability; liveness notes excluded

    def line(self) -> str:
        mode = "pre-vote" if self.pre_vote else "old    "
        return (
            f"delay {self.slow_node_delay:>5}  {mode}  elections {self.elections:>4}"
            f"  pre-votes {self.pre_votes:>4}  ops {self.ops:>5}"
            f"  safety violations {self.safety_violations}"
        )


def spurious_elections(
    seeds: range, delays: tuple[int, ...], run_end: int = 52_000
) -> list[ElectionRow]:
    rows = []
    for delay in delays:
        for pre_vote in (False, True):
            elections = pre_votes = ops = bad = 0
            for seed in seeds:
                r = run_seed(
                    seed,
                    faults=False,
                    reconfig=False,
                    slow_node_delay=delay,
                    pre_vote=pre_vote,
                    run_end=run_end,
                )
                elections += r.stats.elections
                pre_votes += r.stats.pre_votes
                ops += r.ops
                bad += sum(1 for v in r.violations if "LIVENESS" not in v)
            rows.append(ElectionRow(delay, pre_vote, elections, pre_votes, ops, bad))
    return rows


if __name__ == "__main__":
    for row in spurious_elections(range(6), (0, 1200, 2000)):
        print(row.line())
