"""One seed, one schedule: the whole trace is a function of the seed."""

from __future__ import annotations

from coordinator.sim.runner import run_seed


def test_same_seed_same_trace_hash() -> None:
    a, b = run_seed(7), run_seed(7)
    assert a.digest == b.digest
    assert a.trace == b.trace
    assert a.stats == b.stats


def test_different_seeds_differ() -> None:
    assert run_seed(1).digest != run_seed(2).digest


def test_verbose_trace_is_readable_and_names_every_delivery() -> None:
    r = run_seed(3, verbose=True)
    assert any("Accept n" in line for line in r.trace)
    assert any("LEADER" in line for line in r.trace)
    assert "seed 3" in r.report()
