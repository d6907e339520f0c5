"""The shape and tuning of one simulated run, drawn from its seed, so a sweep covers more
than one setup and any seed replays exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["SimParams", "params_for_seed"]


@dataclass(frozen=True, slots=True)
class SimParams:
    seed: int
    n_nodes: int = 3
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    window: int = 8
    max_batch: int = 8
    snapshot_every: int = 16
    tick_unit: int = 100
    drift: int = 5  # each node's tick period is tick_unit +/- drift units
    delay_min: int = 5
    delay_max: int = 120
    p_drop: float = 0.05
    p_dup: float = 0.03
    disk_min: int = 1
    disk_max: int = 30
    fault_gap: tuple[int, int] = (300, 2500)
    fault_end: int = 40_000
    run_end: int = 52_000
    n_clients: int = 3
    keys: tuple[str, ...] = ("a", "b")
    client_timeout: int = 1_500
    liveness_bound: int = 6_000  # units after healing within which every operation completes
    faults: bool = True
    alpha: int = 8  # slots between choosing a membership change and its effect
    reconfig: bool = True  # the fault schedule adds and removes nodes (3 to 5 members)
    reconfig_weight: int = 3  # weight of a membership change among ~15 kinds of fault
    pre_vote: bool = True  # False replays the protocol as it was before pre-vote
    # Every 3,000 units, messages to the highest-numbered node are held for this many units
    # (its clock keeps running): a node that reads its leader's messages late, in bursts, but
    # is alive and connected (the spurious-election scenario of a starved event loop).
    slow_node_delay: int = 0
    # A crashed node's peers are told its links closed (`Node.peer_lost`), each after one
    # message delay, unless the network between them is cut (no FIN crosses a partition).
    peer_lost: bool = True
    # NodeConfig.apply_budget: chosen slots handed to the driver a few at a time.
    apply_budget: int = 0


def params_for_seed(seed: int, **overrides: Any) -> SimParams:
    """Vary the cluster shape and tuning with the seed so a sweep covers more than one setup."""
    r = random.Random(f"params-{seed}")
    base: dict[str, Any] = {
        "seed": seed,
        "n_nodes": r.choice((3, 3, 5)),
        "window": r.choice((2, 8, 32)),
        "max_batch": r.choice((1, 4, 64)),
        "snapshot_every": r.choice((4, 16, 0)),
        "p_drop": r.choice((0.0, 0.03, 0.1)),
        "p_dup": r.choice((0.0, 0.05)),
        "drift": r.choice((0, 3, 8)),
        "n_clients": r.choice((2, 3, 4, 5)),
        "alpha": r.choice((4, 16, 32)),
        # Drawn last: the draws above, and so every recorded seed's setup, stay as they were.
        "apply_budget": r.choice((0, 0, 1, 3)),
    }
    base.update(overrides)
    return SimParams(**base)
