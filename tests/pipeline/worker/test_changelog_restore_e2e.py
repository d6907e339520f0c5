"""State survives Redis losing it (issue 16; docs/architecture.md sec. 4, "Changelogs and
restore"): every stateful stage logs the keys it changes to `paxline.{job}.changelog.{n}`, and
a worker that finds Redis behind the committed point - here emptied by FLUSHALL mid-stream,
or restarted with its data files deleted - restores the partition's keys from the changelog
and goes on. Exactly-once: output and Redis state equal one failure-free run (the checker);
at-least-once: the per-key counts are exact. No partition stops with "state lost".

This module runs its own Redis (the tests wipe it); the session's Kafka broker is shared.
`PAXLINE_CHAOS_RECORDS` scales the input (CI: short)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from e2e_stack import CHAOS_LONG, Stack, produce, read_view, wait_idle, wait_idle_eos, wait_workers
from eos_checker import check

from paxline.localstack import redis as redis_launcher
from paxline.localstack.common import port_open, wait_until
from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.kafka import KafkaBroker
from pipeline.changelog import changelog_topic
from pipeline.kafka import topic_partitions
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
RECORDS = int(os.environ.get("PAXLINE_CHAOS_RECORDS", "20000")) // 2


class OwnRedis:
    """A Redis only this module uses: the tests flush it and delete its files."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server = redis_launcher.start(data_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def flushall(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.flushall()

    def restart_without_data(self) -> None:
        """SIGKILL, delete the AOF and any snapshot, start again on the same port: a Redis
        that comes back empty."""
        os.kill(self.server.pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.server.port), 30, "redis to die")
        for p in self.data_dir.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            elif p.suffix in (".rdb", ".aof"):
                p.unlink()
        self.server = redis_launcher.start(self.data_dir, port=self.server.port)


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path_factory.mktemp("restore-redis"))
    try:
        yield r
    finally:
        redis_launcher.stop(r.data_dir)


@pytest.fixture(scope="module")
def stack(
    kafka_broker: KafkaBroker, own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("restore-stack")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(kafka_broker.bootstrap, own_redis.url, cluster, logs)
    try:
        yield s
    finally:
        s.stop_workers()
        cluster.stop()


class Feeder(threading.Thread):
    """Produces at a steady pace, so that batches are in flight when Redis loses its data.
    The pause between sends paces the load; it synchronises nothing."""

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


def _logs(stack: Stack) -> str:
    return "".join(p.read_text() for p in stack.logs.glob("*.log"))


def _agreed_total(stack: Stack, job: str) -> int:
    with stack.client() as client:
        return sum(p.offset or 0 for p in client.offsets(job))


def _run(stack: Stack, attr: str, workers: str, lose: Callable[[], None]) -> str:
    """Two workers, input fed at a pace; once the job made progress Redis loses everything
    (`lose`), the feed goes on; returns the job's name once the feed is done."""
    for w in (f"{workers}-1", f"{workers}-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    job = load_job(f"{JOBS}:{attr}").name
    feeder = Feeder(stack.kafka, f"{job}-in", _counted(RECORDS))
    feeder.start()
    wait_until(lambda: _agreed_total(stack, job) > 0, 90, f"{job} to make progress")
    lose()
    feeder.finish()
    return job


def _assert_restored(stack: Stack, job: str) -> None:
    logs = _logs(stack)
    assert f"of {job}: restored " in logs, "no partition restored its state"
    assert "STOPPED" not in logs and "state was lost" not in logs
    stack.assert_alive()
    # The changelog: compacted, partitioned like the stage's input.
    parts = topic_partitions(stack.kafka, [f"{job}-in", changelog_topic(job, 0)])
    assert parts[changelog_topic(job, 0)] == parts[f"{job}-in"]


def _finish(stack: Stack, job: str) -> None:
    stack.stop_workers()
    done = stack.paxline("cancel", job)  # its partitions would load the next test's workers
    assert done.returncode == 0, done.stdout + done.stderr


def _check_eos(stack: Stack, attr: str) -> None:
    report = check(load_job(f"{JOBS}:{attr}"), stack.kafka, stack.redis)
    assert report.ok, str(report)
    assert report.state_entries > 0


def test_flushall_mid_stream_exactly_once_equals_a_failure_free_run(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_flush_eos", "rfe", own_redis.flushall)
    wait_idle_eos(stack, job)
    _assert_restored(stack, job)
    _check_eos(stack, "restore_flush_eos")
    _finish(stack, job)


def test_flushall_mid_stream_at_least_once_counts_exactly(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_flush_alo", "rfa", own_redis.flushall)
    wait_idle(stack, job)
    _assert_restored(stack, job)
    want = Counter(v.decode().split(":", 1)[0] for v in _counted(RECORDS))
    assert read_view(stack, job, "counts") == dict(want)
    _finish(stack, job)


def test_redis_restarted_without_data_files_exactly_once_equals_a_failure_free_run(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_wipe_eos", "rwe", own_redis.restart_without_data)
    wait_idle_eos(stack, job)
    _assert_restored(stack, job)
    _check_eos(stack, "restore_wipe_eos")
    _finish(stack, job)


def test_redis_restarted_without_data_files_at_least_once_counts_exactly(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_wipe_alo", "rwa", own_redis.restart_without_data)
    wait_idle(stack, job)
    _assert_restored(stack, job)
    want = Counter(v.decode().split(":", 1)[0] for v in _counted(RECORDS))
    assert read_view(stack, job, "counts") == dict(want)
    _finish(stack, job)


# Jobs without a changelog (Job(changelog=False); docs/architecture.md sec. 4, "Jobs without a
# changelog"): nothing to restore from, so the loss is never papered over.


def _logs_of(stack: Stack, workers: str) -> str:
    """The logs of this test's workers only (an earlier test's may hold STOPPED lines)."""
    return "".join(p.read_text() for p in stack.logs.glob(f"{workers}-*.log"))


_LONG = pytest.mark.skipif(
    not CHAOS_LONG, reason="CI budget (60-150 s each): PAXLINE_CHAOS_LONG=1 (make chaos) runs it"
)


@_LONG
def test_without_a_changelog_exactly_once_stops_the_partition_instead_of_guessing(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_nolog_eos", "rne", own_redis.flushall)
    stopped = lambda: "has no changelog" in _logs_of(stack, "rne")  # noqa: E731
    wait_until(stopped, 240, f"{job} to stop on state loss")
    logs = _logs_of(stack, "rne")
    assert "STOPPED" in logs and "state was lost" in logs
    assert f"of {job}: restored " not in logs
    assert changelog_topic(job, 0) not in topic_partitions(stack.kafka, [changelog_topic(job, 0)])
    stack.assert_alive()  # the worker stays up; only the partition stops
    _finish(stack, job)


@_LONG
def test_without_a_changelog_at_least_once_goes_on_and_says_the_counts_restarted(
    stack: Stack, own_redis: OwnRedis
) -> None:
    job = _run(stack, "restore_nolog_alo", "rna", own_redis.flushall)
    wait_idle(stack, job)
    logs = _logs_of(stack, "rna")
    assert "has no changelog: at-least-once continues" in logs
    assert "STOPPED" not in logs and f"of {job}: restored " not in logs
    got = read_view(stack, job, "counts")
    # What was counted before the flush is gone and not recounted: fewer than were sent.
    assert 0 < sum(got.values()) < RECORDS, got
    assert changelog_topic(job, 0) not in topic_partitions(stack.kafka, [changelog_topic(job, 0)])
    _finish(stack, job)
