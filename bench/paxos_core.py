"""Benchmark of the pure Multi-Paxos core (not a test): no I/O, one process, 3 replicas.

Prints commands chosen (and applied on the leader) per wall-clock second with batching on and
off, and the simulator's speed in simulated ticks per wall second.

    .venv/bin/python bench/paxos_core.py
"""

from __future__ import annotations

import argparse
import time

from coordinator.paxos.types import Command
from coordinator.sim.harness import LocalCluster
from coordinator.sim.kv import write_command
from coordinator.sim.runner import run_seed


def chosen_per_second(max_batch: int, commands: int, burst: int) -> tuple[float, int, int]:
    c = LocalCluster(n=3, max_batch=max_batch, window=32, snapshot_every=1000)
    c.elect(1)
    leader = c.nodes[1]
    payloads = [write_command("put", f"k{i % 16}", str(i)) for i in range(burst)]
    begin = time.perf_counter()
    seq = 0
    while seq < commands:
        for i in range(burst):
            seq += 1
            leader.propose(Command(f"c{i}", seq, payloads[i]))
        c.deliver_all()
    took = time.perf_counter() - begin
    assert sum(r.ok for r in c.results) == seq
    return seq / took, seq, leader.commit_index


def sim_speed(seeds: int) -> tuple[float, float]:
    begin = time.perf_counter()
    ticks = node_ticks = 0
    for seed in range(seeds):
        r = run_seed(seed)
        ticks += r.params.run_end // r.params.tick_unit
        node_ticks += r.params.n_nodes * r.params.run_end // r.params.tick_unit
    took = time.perf_counter() - begin
    return ticks / took, node_ticks / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=64, help="proposals per delivery round")
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    for label, batch in (("batching on (max_batch=64)", 64), ("batching off (max_batch=1)", 1)):
        rate, total, slots = chosen_per_second(batch, args.commands, args.burst)
        print(f"{label:28} {rate:>10,.0f} commands/s  ({total} commands in {slots} slots)")
    cluster_ticks, node_ticks = sim_speed(args.seeds)
    print(
        f"{'simulator':28} {cluster_ticks:>10,.0f} simulated ticks/s "
        f"({node_ticks:,.0f} node-ticks/s, {args.seeds} faulty seeds)"
    )


if __name__ == "__main__":
    main()
