"""The supervisor as a real detached process with real programs (small Python scripts): it
restarts a SIGKILLed program by itself, backs off a program that exits 1 at once instead of
spinning and says why, and stops everything on SIGTERM; a SIGKILLed supervisor leaves no
orphan (its children get SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from paxline.localstack.common import process_alive, wait_until
from paxline.localstack.supervisor import Program, plan_file, read_state, supervisor_pid

ROOT = Path(__file__).resolve().parents[3]
SLEEPER = "import time\nwhile True: time.sleep(1)\n"
BAD = "import sys\nprint('CRITICAL bad configuration: PAXLINE_X must be a number')\nsys.exit(1)\n"


def programs(home: Path) -> dict[str, dict[str, Any]]:
    progs: dict[str, dict[str, Any]] = read_state(home).get("programs", {})
    return progs


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    home = tmp_path / "stack"
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "bad.py").write_text(BAD)
    plan = [
        Program("sleeper", [sys.executable, str(tmp_path / "sleeper.py")],
                str(home / "logs" / "sleeper.log"), "workers", grace=2.0),
        Program("bad", [sys.executable, str(tmp_path / "bad.py")],
                str(home / "logs" / "bad.log"), "workers", grace=2.0),
        Program("late", [sys.executable, str(tmp_path / "sleeper.py")],
                str(home / "logs" / "late.log"), "coordinators", after=["never"]),
        Program("never", [sys.executable, str(tmp_path / "sleeper.py")],
                str(home / "logs" / "never.log"), "services", probe=["tcp", 1]),
    ]  # fmt: skip
    plan_file(home).parent.mkdir(parents=True)
    plan_file(home).write_text(json.dumps({"programs": [asdict(p) for p in plan]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "paxline.localstack.supervisor", str(home)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: programs(home).get("sleeper", {}).get("running", False), 60,
                   "the supervisor to start the sleeper")  # fmt: skip
        yield home, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_a_sigkilled_program_comes_back_and_the_kill_is_recorded(
    supervised: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    home, _ = supervised
    first = programs(home)["sleeper"]["pid"]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: programs(home)["sleeper"]["restarts"] == 1
               and programs(home)["sleeper"]["running"], 30, "the sleeper to restart")  # fmt: skip
    p = programs(home)["sleeper"]
    assert p["pid"] != first and process_alive(p["pid"])
    assert p["last_exit"]["signal"] == "SIGKILL" and p["last_exit"]["code"] is None


def test_a_program_that_exits_1_at_once_is_backed_off_and_says_why(
    supervised: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    home, _ = supervised
    t0 = time.monotonic()
    gaps: list[float] = []
    seen: set[float] = set()
    while time.monotonic() - t0 < 25:
        p = programs(home).get("bad", {})
        e = p.get("last_exit")
        if e and e["at"] not in seen and p.get("next_start"):
            seen.add(e["at"])
            gaps.append(p["next_start"] - e["at"])
        time.sleep(0.2)  # sampling the state file, not synchronisation
    p = programs(home)["bad"]
    # 1 + 2 + 4 + 8 s of back-off fit in 25 s (less when a loaded machine takes seconds to
    # start Python): a restart without back-off would have made 25 or more.
    assert 2 <= p["restarts"] <= 5, p
    assert gaps[:3] == [1.0, 2.0, 4.0], gaps
    assert p["last_exit"]["code"] == 1
    assert p["last_exit"]["line"] == "CRITICAL bad configuration: PAXLINE_X must be a number"


def test_a_program_waits_for_the_probe_of_what_it_comes_after(
    supervised: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    home, _ = supervised
    progs = programs(home)
    assert progs["never"]["running"] and not progs["never"]["ready"]  # nobody serves port 1
    assert not progs["late"]["running"] and progs["late"]["restarts"] == 0


def test_sigterm_stops_every_program_and_the_supervisor(
    supervised: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    home, proc = supervised
    pids = [p["pid"] for p in programs(home).values() if p["pid"]]
    assert supervisor_pid(home) == proc.pid
    proc.terminate()
    assert proc.wait(30) == 0
    assert not [p for p in pids if process_alive(p)]
    assert supervisor_pid(home) is None
    shutdown = read_state(home)["shutdown"]
    assert [line.split(" (")[0] for line in shutdown] == [
        "stopped 2 workers", "stopped 1 coordinators", "stopped kafka and redis"
    ]  # fmt: skip


def test_a_sigkilled_supervisor_leaves_no_orphan(
    supervised: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    home, proc = supervised
    pids = [p["pid"] for p in programs(home).values() if p["pid"]]
    assert pids
    proc.kill()
    proc.wait(10)
    wait_until(lambda: not any(process_alive(p) for p in pids), 30, "children to exit")
