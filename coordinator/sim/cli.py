"""Command-line entry points for the simulator (wired into `paxline sim` elsewhere)."""

from __future__ import annotations

import time

from coordinator.sim.runner import run_seed

__all__ = ["replay", "run_sweep"]


def run_sweep(seeds: int, start: int = 0, verbose: bool = False) -> int:
    """Run seeds [start, start+seeds); print every failing seed with its trace. Exit code 1 if
    any invariant was violated."""
    began = time.perf_counter()
    failed: list[int] = []
    worst_latency = 0
    for seed in range(start, start + seeds):
        result = run_seed(seed)
        worst_latency = max(worst_latency, result.max_heal_latency)
        if not result.ok:
            failed.append(seed)
            print(result.report())
        elif verbose:
            print(f"seed {seed}: ok ({result.ops} ops, {result.stats.events} events)")
    took = time.perf_counter() - began
    print(
        f"{seeds} seeds from {start}: {len(failed)} failed in {took:.1f}s "
        f"(worst post-heal op latency {worst_latency} units)"
    )
    if failed:
        print("failing seeds: " + " ".join(map(str, failed)))
    return 1 if failed else 0


def replay(seed: int, verbose: bool = False) -> int:
    """Re-run one seed; with `verbose` print the whole trace including every delivery."""
    result = run_seed(seed, verbose=verbose)
    if verbose:
        print("\n".join(result.trace))
    print(result.report(tail=0 if verbose else 60))
    print(f"digest {result.digest}")
    return 0 if result.ok else 1
