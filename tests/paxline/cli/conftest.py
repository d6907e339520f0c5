"""Run `paxline` as an operator does: a subprocess, from a directory that is not the clone,
with a private per-user state directory so no real stack is found by accident."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# The budget a command has when a service is down: 3 s, counted from process start.
BUDGET = 3.0


@dataclass
class Ran:
    args: list[str]
    code: int
    out: str
    err: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"paxline {' '.join(self.args)} -> exit {self.code} in {self.seconds:.2f}s\n"
            f"--- stdout\n{self.out}--- stderr\n{self.err}"
        )

    @property
    def clean(self) -> bool:
        return "Traceback" not in self.out and "Traceback" not in self.err


class Cli:
    """`paxline` with a fixed environment; `run` records exit code, output and time."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> Ran:
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "paxline.cli", *args],
            cwd=cwd or self.cwd, env={**self.env, **(extra_env or {})},
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        return Ran(list(args), done.returncode, done.stdout, done.stderr, time.monotonic() - t0)


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAXLINE_")}
    env.update(
        {
            "HOME": str(tmp / "home"),
            "XDG_STATE_HOME": str(tmp / "state"),
            "COLUMNS": "80",
            "PYTHONPATH": str(ROOT),
            "JAVA_TOOL_OPTIONS": "",
        }
    )
    env.pop("JAVA_TOOL_OPTIONS")
    (tmp / "home").mkdir(exist_ok=True)
    return env


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    d = tmp_path / "elsewhere"
    d.mkdir()
    return d


@pytest.fixture
def overhead(tmp_path: Path) -> float:
    """Wall time of `paxline version` here and now: spawning, importing and reaping a Python
    process, which a shared 2-core machine stretches to seconds when others run Kafka tests
    (well under a second when idle). Measured per test, since that load comes and goes."""
    return Cli(tmp_path, base_env(tmp_path)).run("version").seconds


@pytest.fixture
def down_limit(overhead: float) -> float:
    """A command whose service is down answers within its budget (counted from its start)
    plus the process overhead around it."""
    # 1.5x: a command imports more than `version` (HTTP client, msgspec) before it waits.
    return BUDGET + 1.5 * max(overhead, 0.5)


def one_line_error(r: Ran) -> str:
    """The command failed with exactly one line on stderr and no traceback; returns it."""
    assert r.clean, r
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r
    assert lines[0].startswith("error: "), r
    return lines[0]
