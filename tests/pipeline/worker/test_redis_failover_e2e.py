"""The state store follows a Redis Sentinel failover (issue 16; docs/architecture.md sec. 4,
"Redis deployments"): workers write through `redis+sentinel://...?wait_replicas=1`, so a batch
counts as applied only once a replica has it; the primary is SIGKILLed mid-stream, Sentinel
promotes a replica, and the workers carry on against it. Exactly-once: output and Redis state
equal one failure-free run (the checker); at-least-once: the per-key counts are exact.

One Sentinel group (primary, two replicas, three sentinels) per module, fresh; the session's
Kafka broker is shared. `PAXLINE_CHAOS_RECORDS` scales the input (CI: short). CI budget: the
at-least-once variant runs with PAXLINE_CHAOS_LONG=1 (`make chaos`) only."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from e2e_stack import CHAOS_LONG, Stack, produce, read_view, wait_idle, wait_idle_eos, wait_workers
from eos_checker import check

from paxline.localstack import redis_sentinel
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.kafka import KafkaBroker
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
RECORDS = int(os.environ.get("PAXLINE_CHAOS_RECORDS", "20000")) // 2


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_sentinel.SentinelGroup]:
    d = tmp_path_factory.mktemp("sentinel")
    g = redis_sentinel.start(d, replicas=2)
    try:
        yield g
    finally:
        redis_sentinel.stop(d)


@pytest.fixture(scope="module")
def stack(
    kafka_broker: KafkaBroker,
    group: redis_sentinel.SentinelGroup,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("failover-stack")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(kafka_broker.bootstrap, group.url(wait_replicas=1, wait_timeout_ms=1000), cluster,
              logs)  # fmt: skip
    try:
        yield s
    finally:
        s.stop_workers()
        cluster.stop()


class Feeder(threading.Thread):
    """Produces at a steady pace, so that batches are in flight when the primary dies. The
    pause between sends paces the load; it synchronises nothing."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.values = bootstrap, topic, values
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            step = max(1, len(self.values) // 40)
            for i in range(0, len(self.values), step):
                chunk = self.values[i : i + step]
                produce(self.bootstrap, self.topic, chunk, keys=[v.split(b":")[0] for v in chunk])
                self.sent += len(chunk)
                time.sleep(0.1)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(300)
        assert self.error is None, self.error
        assert self.sent == len(self.values)


def _counted(n: int) -> list[bytes]:
    return [f"k{i % 30}:{i}".encode() for i in range(n)]


def _agreed_total(stack: Stack, job: str) -> int:
    with stack.client() as client:
        return sum(p.offset or 0 for p in client.offsets(job))


def _fail_over(group: redis_sentinel.SentinelGroup) -> int:
    """SIGKILL the current primary and wait until Sentinel names another; then the killed
    node comes back as a replica of it (so the group keeps two replicas for the next test).
    Returns the new primary's port."""
    old = group.primary_port()
    assert old is not None
    group.kill_node(group.node_index(old))

    def promoted() -> bool:
        now = group.primary_port()
        return now is not None and now != old

    wait_until(promoted, 60, "Sentinel to promote a replica")
    port = group.primary_port()
    assert port is not None
    group.start_node(group.node_index(old), replica_of=port)
    return port


def _run(stack: Stack, group: redis_sentinel.SentinelGroup, attr: str, workers: str) -> Stack:
    """Two workers, input fed at a pace; once the job made progress the primary is SIGKILLed,
    the feed goes on. Returns a stack whose `redis` is the promoted primary (for reading)."""
    for w in (f"{workers}-1", f"{workers}-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    job = load_job(f"{JOBS}:{attr}").name
    feeder = Feeder(stack.kafka, f"{job}-in", _counted(RECORDS))
    feeder.start()
    wait_until(lambda: _agreed_total(stack, job) > 0, 90, f"{job} to make progress")
    port = _fail_over(group)
    feeder.finish()
    return dataclasses.replace(stack, redis=f"redis://127.0.0.1:{port}/0")


def _finish(stack: Stack, job: str) -> None:
    stack.assert_alive()
    logs = "".join(p.read_text() for p in stack.logs.glob("*.log"))
    assert "STOPPED" not in logs and "state was lost" not in logs
    stack.stop_workers()
    done = stack.paxline("cancel", job)  # its partitions would load the next test's workers
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not CHAOS_LONG, reason="CI budget: PAXLINE_CHAOS_LONG=1 (make chaos) runs it")
def test_sentinel_primary_killed_exactly_once_equals_a_failure_free_run(
    stack: Stack, group: redis_sentinel.SentinelGroup
) -> None:
    reading = _run(stack, group, "failover_eos", "sfe")
    job = load_job(f"{JOBS}:failover_eos").name
    wait_idle_eos(stack, job)
    report = check(load_job(f"{JOBS}:failover_eos"), stack.kafka, reading.redis)
    assert report.ok, str(report)
    assert report.state_entries > 0
    _finish(stack, job)


@pytest.mark.skipif(not CHAOS_LONG, reason="CI budget: PAXLINE_CHAOS_LONG=1 (make chaos) runs it")
def test_sentinel_primary_killed_at_least_once_counts_exactly(
    stack: Stack, group: redis_sentinel.SentinelGroup
) -> None:
    reading = _run(stack, group, "failover_alo", "sfa")
    job = load_job(f"{JOBS}:failover_alo").name
    wait_idle(stack, job)
    want = Counter(v.decode().split(":", 1)[0] for v in _counted(RECORDS))
    assert read_view(reading, job, "counts") == dict(want)
    _finish(stack, job)
