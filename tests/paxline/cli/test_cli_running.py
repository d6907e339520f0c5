"""Every `paxline` command against one running stack (`paxline up`, shared by the module),
run from directories that are not where the stack was started (issue 14: items 1-9 and the
general rules). The last test stops the stack with `paxline down`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.kafka import create_topics, topic_partitions
from tests.paxline.cli.conftest import Cli, Ran, base_env, one_line_error

pytestmark = pytest.mark.e2e

JOBS = """
from pipeline.job import Job


def boom(v):
    if v["n"] == 3:
        raise ValueError("n must not be 3")
    return v


totals = (
    Job("clitotals", guarantee="exactly-once")
    .source("cli-in", partitions=2, value="str")
    .key_by(lambda s: s)
    .count()
    .to_kafka("cli-totals-out")
)
mismatch = Job("climismatch").source("cli-two", partitions=4, value="str").to_kafka("cli-mm-out")
again = Job("clitotals").source("cli-in", partitions=2, value="str").to_kafka("cli-again-out")
dead = (
    Job("clidead")
    .source("cli-dead-in", partitions=1, value="json")
    .key_by(lambda v: str(v["n"]))
    .map(boom)
    .to_kafka("cli-dead-out")
)
"""


class Stack:
    def __init__(self, cli: Cli, home: Path, jobs: Path, started: Ran) -> None:
        self.cli = cli
        self.home = home
        self.jobs = jobs
        self.started = started
        self.info: dict[str, Any] = json.loads((home / "stack.json").read_text())

    @property
    def kafka(self) -> str:
        return str(self.info["kafka"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`paxline up` run in a project directory with no .paxline and no PAXLINE_HOME: the
    stack goes to the per-user default and is found from anywhere afterwards."""
    tmp = tmp_path_factory.mktemp("cli-stack")
    project = tmp / "project"
    project.mkdir()
    jobs = project / "clijobs.py"
    jobs.write_text(JOBS)
    env = base_env(tmp)
    up = Cli(project, env).run("up", "--local", "--workers", "2", timeout=300)
    home = tmp / "state" / "paxline"
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    try:
        assert up.code == 0 and up.clean, up
        yield Stack(Cli(elsewhere, env), home, jobs, up)
    finally:
        Cli(elsewhere, env).run("down", timeout=120)


def test_up_puts_the_stack_in_the_per_user_default(stack: Stack) -> None:
    assert str(stack.home) in stack.started.out, stack.started
    assert (stack.home / "stack.json").is_file()


def test_status_and_cluster_status_find_the_stack_from_another_directory(stack: Stack) -> None:
    s = stack.cli.run("status")
    assert s.code == 0 and s.clean, s
    c = stack.cli.run("cluster", "status", "--json")
    assert c.code == 0 and c.clean, c  # item 1: was "unreachable" x3 on 8701-8703, exit 1
    rows = json.loads(c.out)
    assert [r["endpoint"] for r in rows] == stack.info["coordinators"]
    assert sum(r["role"] == "leader" for r in rows) == 1


def _topics(stack: Stack, *names: str) -> dict[str, int]:
    return topic_partitions(stack.kafka, names, timeout=30)


def test_submit_refuses_a_partition_mismatch_with_exit_2_and_creates_nothing(
    stack: Stack,
) -> None:
    create_topics(stack.kafka, {"cli-two": 2})
    r = stack.cli.run("submit", f"{stack.jobs}:mismatch")
    assert r.code == 2, r  # item 3: was a 57-line traceback, exit 1
    line = one_line_error(r)
    assert "'cli-two' exists with 2 partitions" in line and "declares 4" in line, r
    # item 4: nothing was created for the refused job
    assert _topics(stack, "cli-mm-out", "paxline.climismatch.dlq") == {}


def test_submit_creates_topics_and_says_what_it_read_and_created(stack: Stack) -> None:
    r = stack.cli.run("submit", f"{stack.jobs}:totals", "--wait")
    assert r.code == 0 and r.clean, r
    # item 9: the repartition topic is not counted as a source topic
    assert "reads cli-in (2 partitions)" in r.out, r
    assert "repartitions through paxline.clitotals.repartition.1" in r.out, r
    assert "cli-totals-out" in r.out, r


def test_a_submit_the_coordinators_refuse_creates_nothing(stack: Stack) -> None:
    r = stack.cli.run("submit", f"{stack.jobs}:again")
    assert r.code == 2, r
    assert "already exists" in one_line_error(r), r
    assert _topics(stack, "cli-again-out") == {}  # item 4: a 409 left y-out behind


def test_jobs_lists_the_job_with_full_topic_names_at_80_columns(stack: Stack) -> None:
    r = stack.cli.run("jobs")
    assert r.code == 0 and r.clean, r
    assert "paxline.clitotals.repartition.1" in r.out, r
    j = stack.cli.run("jobs", "--json")
    assert [x["spec"]["name"] for x in json.loads(j.out)] == ["clitotals"], j


def _offsets(stack: Stack, job: str) -> list[dict[str, Any]]:
    r = stack.cli.run("offsets", job, "--json")
    assert r.code == 0 and r.clean, r
    parts: list[dict[str, Any]] = json.loads(r.out)
    return parts


def test_an_exactly_once_job_catches_up_to_lag_0_everywhere(stack: Stack) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka})
    for i in range(200):
        producer.produce("cli-in", f"w{i % 7}".encode())
    producer.flush(30)
    deadline = time.monotonic() + 120
    parts = _offsets(stack, "clitotals")
    while not all(p["caught_up"] for p in parts):  # item 5: repartition lag stayed 1
        assert time.monotonic() < deadline, parts
        parts = _offsets(stack, "clitotals")
    assert all(p["lag"] == 0 for p in parts), parts
    assert sum(p["offset"] for p in parts if p["topic"] == "cli-in") == 200
    # The API (and so the dashboard) agrees once workers have reported their progress.
    url = stack.info["coordinators"][0] + "/v1/jobs/clitotals/offsets"
    while True:
        api = httpx.get(url, timeout=10).json()["partitions"]
        if all(p["lag"] == 0 for p in api):
            break
        assert time.monotonic() < deadline, api
        time.sleep(0.5)  # polling the API for a worker report, not synchronisation
    table = stack.cli.run("offsets", "clitotals")
    assert table.code == 0 and table.clean and "marker" not in table.out, table
    assert "paxline.clitotals.repartition.1" in table.out, table  # item 9: 80 columns


def test_offsets_with_kafka_down_is_one_line_within_the_budget(
    stack: Stack, down_limit: float
) -> None:
    r = stack.cli.run("offsets", "clitotals", "--kafka", "127.0.0.1:1")
    assert r.code == 1, r
    assert "kafka at 127.0.0.1:1 did not answer" in one_line_error(r), r
    assert r.seconds < down_limit, r


def test_reset_offsets_of_a_running_job_names_the_pause_command(stack: Stack) -> None:
    r = stack.cli.run("reset-offsets", "clitotals", "--to", "cli-in:0=0")
    assert r.code == 2, r
    line = one_line_error(r)
    assert "`paxline pause clitotals`" in line and "/v1/" not in line, r  # item 9


def test_pause_reset_resume_cancel(stack: Stack) -> None:
    for args, expect in (
        (["pause", "clitotals"], "paused clitotals"),
        (["reset-offsets", "clitotals", "--to", "cli-in:0=0"], "reset 1 offsets"),
        (["resume", "clitotals"], "resumed clitotals"),
        (["cancel", "clitotals"], "cancelled clitotals"),
    ):
        r = stack.cli.run(*args)
        assert r.code == 0 and r.clean and expect in r.out, r
    gone = stack.cli.run("cancel", "clitotals")
    assert gone.code == 2 and "unknown job 'clitotals'" in one_line_error(gone), gone


def test_a_dead_letter_of_a_second_stage_names_the_source_record(stack: Stack) -> None:
    r = stack.cli.run("submit", f"{stack.jobs}:dead", "--wait")
    assert r.code == 0 and r.clean, r
    producer = Producer({"bootstrap.servers": stack.kafka})
    for n in range(6):
        producer.produce("cli-dead-in", json.dumps({"n": n}).encode())
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": stack.kafka, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition("paxline.clidead.dlq", 0, 0)])
    try:
        msg = None
        deadline = time.monotonic() + 60
        while msg is None or msg.error() is not None:
            assert time.monotonic() < deadline, "no dead letter arrived"
            msg = consumer.poll(1.0)
        headers = {k: v for k, v in msg.headers() or []}
        # item 8: the user's record, not paxline.clidead.repartition.1, and a readable value
        assert headers["paxline.source.topic"] == b"cli-dead-in"
        assert headers["paxline.source.offset"] == b"3"
        assert headers["paxline.record.topic"] == b"paxline.clidead.repartition.1"
        assert json.loads(msg.value()) == {"n": 3}
    finally:
        consumer.close()


def test_worker_logs_have_no_heartbeat_lines_and_no_errors(stack: Stack) -> None:
    for log in sorted((stack.home / "logs").glob("worker-*.log")):
        text = log.read_text()
        assert "HTTP Request" not in text, log  # item 6: one INFO line per heartbeat
        assert " ERROR " not in text and "Traceback" not in text, (log, text[-3000:])


def test_down_stops_workers_first_and_everything_within_5s(stack: Stack, overhead: float) -> None:
    r = stack.cli.run("down")
    assert r.code == 0 and r.clean, r
    assert r.seconds < 5.0 + overhead, r  # item 7: 16.5 s (workers waited on gone coordinators)
    out = r.out
    assert out.index("workers") < out.index("coordinators") < out.index("kafka"), r
    for log in sorted((stack.home / "logs").glob("worker-*.log")):
        text = log.read_text()
        assert "graceful shutdown incomplete" not in text and "Traceback" not in text, log
    s = stack.cli.run("status")
    assert s.code == 1 and s.clean, s
