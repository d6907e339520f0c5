"""Run one seeded schedule end to end and collect the verdict."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from coordinator.sim.checkers import check_convergence, check_linearizability
from coordinator.sim.params import SimParams, params_for_seed
from coordinator.sim.world import Stats, World

__all__ = ["RunResult", "run_seed"]


@dataclass(slots=True)
class RunResult:
    seed: int
    params: SimParams
    violations: list[str]
    notes: list[str]
    trace: list[str]
    digest: str
    stats: Stats
    ops: int
    max_heal_latency: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self, tail: int = 60) -> str:
        lines = [f"seed {self.seed}: {'OK' if self.ok else 'VIOLATION'}  {self.params}"]
        lines += [f"  ! {v}" for v in self.violations]
        lines += [f"  - {n}" for n in self.notes]
        if not self.ok and tail > 0:
            lines.append(f"  trace (last {tail} events; replay with --seed {self.seed} -v):")
            lines += [f"    {t}" for t in self.trace[-tail:]]
        return "\n".join(lines)


def run_seed(seed: int, verbose: bool = False, **overrides: Any) -> RunResult:
    params = params_for_seed(seed, **overrides)
    world = World(params, verbose=verbose)
    world.run()
    history = world.workload.finish()
    lin_violations, notes = check_linearizability(history)
    for v in lin_violations:
        world.violation(v)
    if world.healed_at is not None:
        for v in check_convergence(world):
            world.violation(v)
    h = hashlib.sha256()
    h.update(str(world.digest).encode())
    for line in world.trace:
        h.update(line.encode())
    for op in history:
        h.update(op.describe().encode())
    return RunResult(
        seed=seed,
        params=params,
        violations=world.violations,
        notes=notes,
        trace=world.trace,
        digest=h.hexdigest(),
        stats=world.stats,
        ops=len(history),
        max_heal_latency=world.workload.max_heal_latency,
    )
