"""A node counts ticks of time it was able to run: a late wake-up is one tick, not many
(coordinator/server/ticks.py). Before, a loop stalled for 600 ms counted 24 ticks at once and
timed out on a leader whose heartbeats were still unread in its socket."""

from __future__ import annotations

import asyncio
import time

import pytest

from coordinator.server.ticks import TickClock, tick_forever

# (wake-up times after a start at 0 with a 25 ms interval, ticks counted, dropped)
SCENARIOS = [
    ("on time", [0.0251, 0.0501, 0.0751, 0.1001], 4, 0),
    ("early wake-ups count nothing", [0.010, 0.020, 0.025, 0.049], 1, 0),
    ("a little late keeps the schedule", [0.030, 0.051, 0.076], 3, 0),
    ("a 600 ms stall counts one tick", [0.625], 1, 23),
    ("after a stall the schedule restarts from the wake-up", [0.625, 0.640, 0.650, 0.675], 3, 23),
]


@pytest.mark.parametrize(("name", "wakes", "counted", "dropped"), SCENARIOS)
def test_tick_clock(name: str, wakes: list[float], counted: int, dropped: int) -> None:
    clock = TickClock(0.025, 0.025)
    total = sum(clock.due(t) for t in wakes)
    assert (total, clock.dropped) == (counted, dropped), name


def test_a_stall_shorter_than_an_election_timeout_of_loop_time_never_reaches_it() -> None:
    """Twelve ticks (the default election timeout) need twelve wake-ups an interval apart,
    however long the stalls between them."""
    clock = TickClock(0.025, 0.025)
    t, counted = 0.0, 0
    for _ in range(11):
        t += 2.0  # the process was descheduled for two seconds each time
        counted += clock.due(t)
    assert counted == 11
    assert clock.late_max == pytest.approx(2.0 - 0.025, abs=1e-6)


def test_an_event_loop_blocked_for_600_ms_counts_one_tick_not_24() -> None:
    """The real ticker on a real loop: the loop is blocked (as a starved or busy node's is)
    for 24 intervals; the old catch-up ticker counted 24 ticks on waking, twice the default
    election timeout of 12."""

    async def scenario() -> tuple[int, int]:
        clock = TickClock(0.025, 0.0)
        counted: list[int] = []
        task = asyncio.create_task(tick_forever(clock, lambda: counted.append(1)))
        await asyncio.sleep(0)  # the ticker schedules its first tick
        time.sleep(0.6)  # blocks the loop itself: the stall under test, not synchronisation
        deadline = time.monotonic() + 5
        while not counted and time.monotonic() < deadline:  # until the ticker has woken
            await asyncio.sleep(0)
        task.cancel()
        return len(counted), clock.dropped

    counted, dropped = asyncio.run(scenario())
    assert counted == 1, counted
    assert dropped >= 20, dropped
