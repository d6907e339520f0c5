"""Deterministic fault-injecting simulator for the Paxos core: one seed, one schedule."""

from coordinator.sim.cli import replay, run_sweep
from coordinator.sim.params import SimParams, params_for_seed
from coordinator.sim.runner import RunResult, run_seed
from coordinator.sim.world import World

__all__ = ["RunResult", "SimParams", "World", "params_for_seed", "replay", "run_seed", "run_sweep"]
