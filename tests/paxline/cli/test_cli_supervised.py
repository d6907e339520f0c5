"""`paxline up --brokers 3` as an operator uses it, from another directory: three KRaft
brokers and a job that runs on them; the supervisor brings back a kill -9'd worker and
`paxline status` says how it ended; a SIGSTOPped Redis shows as "stalled: Redis unreachable
since HH:MM:SS" in `paxline status`, the API and the dashboard, and clears after SIGCONT;
`paxline down` leaves no process behind (issue 13, operator side)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from playwright.sync_api import expect, sync_playwright

from paxline.localstack.common import process_alive
from tests.coordinator.server.dashboard.dash_bench import CHROMIUM, CHROMIUM_ARGS
from tests.paxline.cli.conftest import Cli, Ran, base_env, one_line_error

pytestmark = pytest.mark.e2e

JOBS = """
from pipeline.job import Job

counts = (
    Job("stallcount", guarantee="exactly-once")
    .source("stall-in", partitions=4, value="str")
    .key_by(lambda s: s)
    .count()
    .to_kafka("stall-out")
)
"""
STALL = re.compile(r"stalled: Redis unreachable since \d\d:\d\d:\d\d")


class Stack:
    def __init__(self, cli: Cli, home: Path, jobs: Path, started: Ran) -> None:
        self.cli = cli
        self.home = home
        self.jobs = jobs
        self.started = started

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "stack.json").read_text())
        return data

    def status(self) -> dict[str, dict[str, Any]]:
        r = self.cli.run("status", "--json")
        assert r.clean, r
        return {row["service"]: row for row in json.loads(r.out)}

    def wait(self, what: str, check: Any, timeout: float = 120.0) -> Any:
        """Poll `paxline status --json` until `check(rows)` gives a truthy value."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.status()
            found = check(rows)
            if found:
                return found
            assert time.monotonic() < deadline, f"{what}: {json.dumps(rows, indent=1)}"
            time.sleep(1.0)  # polling the stack's state, not synchronisation

    def produce(self, n: int) -> None:
        p = Producer({"bootstrap.servers": self.info["kafka"]})
        for i in range(n):
            p.produce("stall-in", f"w{i % 11}".encode(), key=str(i).encode())
        assert p.flush(60) == 0

    def caught_up(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            r = self.cli.run("offsets", "stallcount", "--json")
            assert r.code == 0 and r.clean, r
            parts = json.loads(r.out)
            if all(p["caught_up"] for p in parts):
                return
            assert time.monotonic() < deadline, parts
            time.sleep(1.0)  # polling the job's offsets, not synchronisation


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("supervised")
    project = tmp / "project"
    project.mkdir()
    jobs = project / "stalljobs.py"
    jobs.write_text(JOBS)
    env = {
        **base_env(tmp),
        "PAXLINE_HOME": str(tmp / "stack"),
        # Three brokers next to everything else on a small shared machine.
        "PAXLINE_KAFKA_HEAP": "-Xms128m -Xmx512m",
        # Commands answer within 3 s on a quiet machine; this one runs at load 40+.
        "PAXLINE_TIMEOUT": "30",
    }
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    up = Cli(project, env).run("up", "--local", "--brokers", "3", "--workers", "2", timeout=600)
    try:
        assert up.code == 0 and up.clean, up
        yield Stack(Cli(elsewhere, env), tmp / "stack", jobs, up)
    finally:
        Cli(elsewhere, env).run("down", timeout=300)


def test_up_starts_three_brokers_and_status_shows_each(stack: Stack) -> None:
    said = " ".join(stack.started.out.split())  # as printed, wrapped at 80 columns
    assert "3 brokers, replication 3, min.insync.replicas 2" in said, stack.started
    rows = stack.status()
    brokers = [rows[f"kafka-{i}"] for i in (1, 2, 3)]
    assert all(b["up"] and b["restarts"] == 0 for b in brokers), brokers
    assert [b["address"] for b in brokers] == stack.info["kafka"].split(",")
    assert rows["supervisor"]["up"]


def test_bad_flags_are_one_line_and_exit_2(stack: Stack) -> None:
    for args, words in (
        (["--brokers", "9"], "--brokers must be between 1 and 5, got 9"),
        (["--brokers", "x"], "'--brokers'"),
        (["--brokers", "1"], "runs 3 brokers, not 1"),  # its topics live on the three
        (["--bogus"], "No such option: --bogus"),
    ):
        r = stack.cli.run("up", "--local", *args)
        assert r.code == 2, r
        assert words in one_line_error(r), r
    assert stack.status()["kafka-1"]["restarts"] == 0  # nothing was touched


def test_a_job_runs_on_the_cluster_with_replication_3(stack: Stack) -> None:
    r = stack.cli.run("submit", f"{stack.jobs}:counts", "--wait")
    assert r.code == 0 and r.clean, r
    stack.produce(400)
    stack.caught_up()
    md = AdminClient({"bootstrap.servers": stack.info["kafka"]}).list_topics(timeout=30)
    for topic in ("stall-in", "stall-out"):
        parts = md.topics[topic].partitions
        assert parts and all(len(p.replicas) == 3 for p in parts.values()), (topic, parts)


def test_a_sigkilled_worker_comes_back_and_status_says_how_it_ended(stack: Stack) -> None:
    before = stack.status()["worker-1"]
    os.kill(before["pid"], signal.SIGKILL)
    row = stack.wait("worker-1 to be restarted", lambda rows: rows["worker-1"]["up"]
                     and rows["worker-1"]["restarts"] == 1 and rows["worker-1"])  # fmt: skip
    assert row["pid"] != before["pid"]
    assert re.fullmatch(r"killed by SIGKILL at \d\d:\d\d:\d\d", row["last_exit"]), row
    table = stack.cli.run("status")
    assert table.code == 0 and table.clean, table
    assert "killed by SIGKILL at" in table.out, table


def test_a_stopped_redis_shows_as_a_stall_everywhere_and_clears(stack: Stack) -> None:
    stack.caught_up()
    redis_pid = stack.status()["redis"]["pid"]
    api = stack.info["coordinators"][0]
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        stack.produce(200)  # the workers need Redis for these
        stalled = stack.wait(
            "a worker to report the stall",
            lambda rows: [r for n, r in rows.items() if n.startswith("worker-") and r["stalled"]],
        )
        assert all(STALL.search(r["stalled"]) for r in stalled), stalled
        assert all(s["reason"] == "Redis unreachable" for r in stalled for s in r["stalls"])
        table = stack.cli.run("status")
        assert table.clean and STALL.search(table.out), table
        assert re.search(r"stallcount \S+\[\d\] on worker-\d: " + STALL.pattern, table.out)
        parts = httpx.get(f"{api}/v1/jobs/stallcount/offsets", timeout=10).json()["partitions"]
        assert any(p["stalled"] == "Redis unreachable" for p in parts), parts
        with sync_playwright() as pw:
            if not Path(CHROMIUM).exists():
                pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-deps")
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)  # fmt: skip
            try:
                page = browser.new_page()
                page.goto(api + "/")
                cell = page.locator("[data-testid^='status-stallcount-']", has_text=STALL)
                expect(cell.first).to_be_visible(timeout=60_000)
                worker = page.locator("[data-testid^='worker-stalled-']", has_text=STALL)
                expect(worker.first).to_have_text(re.compile(r"\d+ partitions? " + STALL.pattern))
                os.kill(redis_pid, signal.SIGCONT)
                still = page.locator("[data-testid^='status-stallcount-']", has_text="stalled")
                expect(still).to_have_count(0, timeout=60_000)
            finally:
                browser.close()
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    stack.wait("the stalls to clear",
               lambda rows: not any(r.get("stalled") for r in rows.values()))  # fmt: skip
    stack.caught_up()
    assert "stalled" not in stack.cli.run("status").out


def test_up_again_changes_only_the_number_of_workers(stack: Stack) -> None:
    before = stack.status()
    r = stack.cli.run("up", "--local", "--brokers", "3", "--workers", "3", timeout=300)
    assert r.code == 0 and r.clean, r
    after = stack.status()
    assert after["worker-3"]["up"], after
    for name in ("kafka-1", "kafka-2", "kafka-3", "redis", "coordinator-1", "worker-2"):
        assert after[name]["pid"] == before[name]["pid"], name


def test_down_stops_everything_and_leaves_no_process(stack: Stack) -> None:
    state = json.loads((stack.home / "supervisor" / "state.json").read_text())
    pids = [state["pid"]] + [p["pid"] for p in state["programs"].values() if p["pid"]]
    assert len(pids) == 1 + 3 + 1 + 3 + 3
    r = stack.cli.run("down", timeout=300)
    assert r.code == 0 and r.clean, r
    assert [p for p in pids if process_alive(p)] == []
    left = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(stack.home) in cmd:
                left.append((d.name, cmd))
    assert left == []
    s = stack.cli.run("status")
    assert s.code == 1 and s.clean, s
