"""The supervisor's restart policy as a pure state machine: compose's `restart:
unless-stopped` with a capped, doubling delay that a healthy run resets."""

from __future__ import annotations

import signal
import time

from paxline.localstack.supervisor import Backoff, Schedule, describe_exit, exit_info

POLICY = Backoff(first=1.0, factor=2.0, cap=30.0, stable_after=10.0)


def test_quick_exits_in_a_row_double_the_delay_up_to_the_cap() -> None:
    s = Schedule(POLICY)
    now = 1000.0
    delays = []
    for _ in range(8):
        assert s.due(now)
        s.started(now, pid=42)
        now += 0.5  # exits half a second after it started: bad configuration
        s.exited(now, 1, "bad config")
        delays.append(s.next_start - now)
        assert not s.due(now)
        now = s.next_start
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert s.restarts == 7  # the first start is not a restart


def test_a_run_longer_than_stable_after_resets_the_delay() -> None:
    s = Schedule(POLICY)
    now = 0.0
    for _ in range(3):  # three quick failures: the next delay has grown to 4 s
        s.started(now, 1)
        now += 0.5
        s.exited(now, 1)
        assert not s.due(now)
        now = s.next_start
    assert s.last_exit is not None and s.next_start - s.last_exit.at == 4.0
    s.started(now, 2)
    now += 60.0  # a healthy minute, then a kill -9
    s.exited(now, -signal.SIGKILL)
    assert s.next_start - now == 1.0
    assert s.restarts == 3


def test_the_exit_says_how_and_when() -> None:
    at = time.mktime((2026, 12, 4, 12, 3, 4, 0, 0, -1))
    killed = exit_info(-signal.SIGKILL, at, 5.0, "ignored: a signal came from outside")
    assert describe_exit(killed) == "killed by SIGKILL at 12:03:04"
    bad = exit_info(1, at, 0.2, "CRITICAL worker w1 stopped: PAXLINE_REDIS is not a URL")
    assert describe_exit(bad) == (
        "exited with code 1 at 12:03:04: CRITICAL worker w1 stopped: PAXLINE_REDIS is not a URL"
    )
    assert describe_exit(exit_info(0, at, 1.0)) == "exited with code 0 at 12:03:04"
