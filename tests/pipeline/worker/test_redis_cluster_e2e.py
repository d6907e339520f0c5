"""Job state on a Redis Cluster (issue 16; docs/architecture.md sec. 4, "Redis deployments"):
workers write through `redis+cluster://`, each partition's keys in its own slot. One cluster
primary is SIGKILLed mid-stream and its replica promoted; the workers carry on. Exactly-once:
output and Redis state equal one failure-free run (the checker); at-least-once: exact counts.
And a deployment moved from one Redis to a cluster (every key name changes) loses nothing:
the changelog restore rebuilds the state under the new layout.

One cluster (3 primaries, 1 replica each) per module; the session's Kafka broker and Redis
are shared. `PAXLINE_CHAOS_RECORDS` scales the input. CI budget: the at-least-once failover
variant runs with PAXLINE_CHAOS_LONG=1 (`make chaos`) only."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator

import pytest
from e2e_stack import CHAOS_LONG, Stack, produce, wait_idle, wait_idle_eos, wait_workers
from eos_checker import check
from test_redis_failover_e2e import Feeder

from paxline.localstack import redis_cluster
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.kafka import KafkaBroker
from paxline.localstack.redis import RedisServer
from pipeline.loading import load_job
from pipeline.state import RedisStores

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
RECORDS = int(os.environ.get("PAXLINE_CHAOS_RECORDS", "20000")) // 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_cluster.ClusterGroup]:
    d = tmp_path_factory.mktemp("redis-cluster")
    g = redis_cluster.start(d, replicas=1)
    try:
        yield g
    finally:
        redis_cluster.stop(d)


@pytest.fixture(scope="module")
def stack(
    kafka_broker: KafkaBroker,
    cluster: redis_cluster.ClusterGroup,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("cluster-stack")
    coordinators = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    coordinators.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(kafka_broker.bootstrap, cluster.url, coordinators, logs)
    try:
        yield s
    finally:
        s.stop_workers()
        coordinators.stop()


def _counted(n: int, first: int = 0) -> list[bytes]:
    return [f"k{i % 30}:{i}".encode() for i in range(first, first + n)]


def _agreed_total(stack: Stack, job: str) -> int:
    with stack.client() as client:
        return sum(p.offset or 0 for p in client.offsets(job))


def _view(url: str, job: str) -> dict[str, int]:
    stores = RedisStores(url)
    try:
        return {k.decode(): int(v) for k, v in stores.read_view(job, "counts").items()}
    finally:
        stores.close()


def _start(stack: Stack, attr: str, workers: str) -> str:
    for w in (f"{workers}-1", f"{workers}-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    return load_job(f"{JOBS}:{attr}").name


def _kill_a_primary(cluster: redis_cluster.ClusterGroup) -> None:
    """SIGKILL one primary, wait until its replica took over, bring it back as a replica."""
    victim = cluster.primaries()[0]
    i = cluster.ports.index(victim)
    cluster.kill_node(i)
    wait_until(cluster.healthy, 60, "a replica to be promoted (cluster_state:ok)")
    cluster.start_node(i)


def _run_failover(stack: Stack, cluster: redis_cluster.ClusterGroup, attr: str, w: str) -> str:
    job = _start(stack, attr, w)
    feeder = Feeder(stack.kafka, f"{job}-in", _counted(RECORDS))
    feeder.start()
    wait_until(lambda: _agreed_total(stack, job) > 0, 90, f"{job} to make progress")
    _kill_a_primary(cluster)
    feeder.finish()
    return job


def _finish(stack: Stack, job: str) -> None:
    stack.assert_alive()
    logs = "".join(p.read_text() for p in stack.logs.glob("*.log"))
    assert "STOPPED" not in logs and "state was lost" not in logs
    stack.stop_workers()
    done = stack.paxline("cancel", job)  # its partitions would load the next test's workers
    assert done.returncode == 0, done.stdout + done.stderr


def test_cluster_primary_killed_exactly_once_equals_a_failure_free_run(
    stack: Stack, cluster: redis_cluster.ClusterGroup
) -> None:
    job = _run_failover(stack, cluster, "cluster_eos", "cfe")
    wait_idle_eos(stack, job)
    report = check(load_job(f"{JOBS}:cluster_eos"), stack.kafka, cluster.url)
    assert report.ok, str(report)
    assert report.state_entries > 0
    _finish(stack, job)


@pytest.mark.skipif(not CHAOS_LONG, reason="CI budget: PAXLINE_CHAOS_LONG=1 (make chaos) runs it")
def test_cluster_primary_killed_at_least_once_counts_exactly(
    stack: Stack, cluster: redis_cluster.ClusterGroup
) -> None:
    job = _run_failover(stack, cluster, "cluster_alo", "cfa")
    wait_idle(stack, job)
    want = Counter(v.decode().split(":", 1)[0] for v in _counted(RECORDS))
    assert _view(cluster.url, job) == dict(want)
    _finish(stack, job)


@pytest.mark.skipif(not CHAOS_LONG, reason="CI budget: PAXLINE_CHAOS_LONG=1 (make chaos) runs it")
def test_moving_from_one_redis_to_a_cluster_restores_the_state_exactly(
    stack: Stack, cluster: redis_cluster.ClusterGroup, redis_server: RedisServer
) -> None:
    """First half on one Redis ({job} keys), second half on the cluster ({job:topic:p} keys):
    the new layout reads as wiped, each partition is restored from its changelog, and the
    counts over both halves are exact."""
    single = dataclasses.replace(stack, redis=redis_server.url, workers={})
    job = _start(single, "cluster_upgrade_alo", "cu1")
    first = _counted(RECORDS // 2)
    produce(stack.kafka, f"{job}-in", first, keys=[v.split(b":")[0] for v in first])
    wait_idle(single, job)
    single.stop_workers()
    for w in ("cu2-1", "cu2-2"):
        stack.start_worker(w)
    second = _counted(RECORDS // 2, first=RECORDS // 2)
    produce(stack.kafka, f"{job}-in", second, keys=[v.split(b":")[0] for v in second])
    wait_idle(stack, job)
    want = Counter(v.decode().split(":", 1)[0] for v in first + second)
    assert _view(cluster.url, job) == dict(want)
    logs = "".join(p.read_text() for p in stack.logs.glob("cu2-*.log"))
    assert f"of {job}: restored " in logs, "no partition restored its state"
    _finish(stack, job)
