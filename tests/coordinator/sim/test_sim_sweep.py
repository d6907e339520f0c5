"""The CI sweep: many seeded schedules with partitions, crashes, clock stalls, lossy links."""

from __future__ import annotations

import pytest

from coordinator.sim.cli import run_sweep
from coordinator.sim.runner import run_seed
from coordinator.sim.world import World, params_for_seed

SEEDS = 500


@pytest.mark.sim
def test_sweep_finds_no_violation(capsys: pytest.CaptureFixture[str]) -> None:
    failures = [r.report() for r in map(run_seed, range(SEEDS)) if not r.ok]
    assert not failures, "\n\n".join(failures[:3])


@pytest.mark.sim
def test_faults_actually_happen() -> None:
    stats = [run_seed(s).stats for s in range(20)]
    assert sum(s.crashes for s in stats) > 20
    assert sum(s.partitions for s in stats) > 20
    assert sum(s.leaders for s in stats) > 40
    assert sum(s.dropped for s in stats) > 100


@pytest.mark.sim
def test_the_sweep_replaces_disks_and_kills_leaders_right_after_a_write() -> None:
    traces = []
    for seed in range(20):
        w = World(params_for_seed(seed))
        w.run()
        traces.append("\n".join(w.trace))
    assert sum(t.count("WIPE disk") for t in traces) >= 5
    assert sum(t.count("right after acknowledging a write") for t in traces) >= 5


@pytest.mark.sim
def test_the_sweep_adds_replaces_and_removes_nodes_and_the_leader() -> None:
    """Reconfiguration under faults: nodes are added (as learners with an empty disk),
    replaced and removed, the leader among them, and removed nodes are shut down."""
    traces = []
    added = removed = 0
    for seed in range(20):
        w = World(params_for_seed(seed))
        w.run()
        added += w.stats.added
        removed += w.stats.removed
        traces.append("\n".join(w.trace))
    text = "\n".join(traces)
    assert added >= 10 and removed >= 10
    assert text.count("RECONFIG request replace") >= 3
    assert text.count("(the leader)") >= 3
    assert text.count("RETIRE") >= 5


def test_fault_free_run_makes_progress_without_violations() -> None:
    r = run_seed(11, faults=False)
    assert r.ok, r.report()
    assert r.ops > 100


def test_sweep_entrypoint_reports_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sweep(3, start=100) == 0
    assert "3 seeds from 100: 0 failed" in capsys.readouterr().out
