"""Workers ride out transient faults (issue 13; docs/architecture.md, sec. 6): a dependency
that goes away and comes back never ends a worker process; the affected partitions stall,
the stall is reported, and processing resumes by itself. Every scenario ends with the
exactly-once checker (output and Redis state equal one failure-free run) or, for
at-least-once, with the exact per-key counts, and prints the time from the dependency coming
back to lag 0.

This module runs its own Redis (the tests kill and pause it) and its own coordinators, on the
session's 3-broker chaos cluster (replication 3, `min.insync.replicas=2`; `chaos_kafka`).
`PAXLINE_CHAOS_RECORDS` scales the input and `PAXLINE_CHAOS_LONG=1` (`make chaos`) lengthens
the outages; CI runs the short variant."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
from chaos_kafka import ChaosKafka
from e2e_stack import (
    CHAOS_LONG,
    OwnRedis,
    Stack,
    produce,
    read_view,
    recovery_bound,
    wait_idle,
    wait_idle_eos,
    wait_workers,
)
from eos_checker import check

from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
RECORDS = int(os.environ.get("PAXLINE_CHAOS_RECORDS", "20000")) // 2
BASE_TS = 1_700_000_000_000


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path_factory.mktemp("heal-redis"))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def stack(
    chaos_kafka: ChaosKafka, own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("heal-stack")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(chaos_kafka.bootstrap, own_redis.url, cluster, logs, batch_size=None)
    try:
        yield s
    finally:
        s.stop_workers()
        cluster.stop()


def _submit(stack: Stack, attr: str) -> str:
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr
    return load_job(f"{JOBS}:{attr}").name


def _counted(n: int, start: int = 0) -> list[bytes]:
    return [f"k{i % 30}:{i}".encode() for i in range(start, start + n)]


def _produce_counted(stack: Stack, topic: str, values: list[bytes]) -> None:
    produce(stack.kafka, topic, values, keys=[v.split(b":")[0] for v in values])


def _agreed_total(stack: Stack, job: str) -> int:
    with stack.client() as client:
        return sum(p.offset or 0 for p in client.offsets(job))


def _wait_progress(stack: Stack, job: str, above: int) -> None:
    wait_until(lambda: _agreed_total(stack, job) > above, 90, f"{job} to make progress")


def _logs(stack: Stack) -> str:
    return "".join(p.read_text() for p in stack.logs.glob("*.log"))


def _noticed(stack: Stack, text: str) -> bool:
    """The fault reached a worker: it logged `text`, or (the bug) a worker died of it."""
    return text in _logs(stack) or any(p.poll() is not None for p in stack.workers.values())


def _check_eos(stack: Stack, attr: str) -> None:
    report = check(load_job(f"{JOBS}:{attr}"), stack.kafka, stack.redis)
    assert report.ok, str(report)
    assert report.outputs > 0 or report.state_entries > 0


class _Resumed:
    """Watches, from when the dependency is back, for the first agreed offset to move:
    "processing resumed" (issue 13: within 2 s), reported next to "lag 0" (which also
    counts working off what arrived during the outage)."""

    def __init__(self, stack: Stack, job: str, base: int | None = None) -> None:
        self.since = time.monotonic()
        self.at: float | None = None
        self._stop = threading.Event()
        self._base = base  # None: the first total read from now on
        self._stack, self._job = stack, job
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self.at is None and not self._stop.wait(0.2):
            try:
                total = _agreed_total(self._stack, self._job)
            except Exception:  # coordinators still electing: ask again
                continue
            if self._base is None:
                self._base = total
            elif total > self._base:
                self.at = time.monotonic()

    def text(self) -> str:
        self._stop.set()
        self._thread.join(5)
        return f"resumed in {self.at - self.since:.2f}s, " if self.at is not None else ""


def _report(scenario: str, seconds: float, resumed: _Resumed | None = None) -> None:
    seen = resumed.text() if resumed is not None else ""
    print(f"\nRECOVERY {scenario}: dependency back -> {seen}lag 0 in {seconds:.2f}s")


def test_redis_killed_and_restarted_mid_stream_no_worker_exits(
    stack: Stack, own_redis: OwnRedis
) -> None:
    for w in ("rk-1", "rk-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    job = _submit(stack, "heal_redis_eos")
    values = _counted(RECORDS)
    _produce_counted(stack, f"{job}-in", values[: len(values) // 2])
    _wait_progress(stack, job, 0)
    own_redis.kill()
    _produce_counted(stack, f"{job}-in", values[len(values) // 2 :])
    wait_until(lambda: _noticed(stack, "stalled"), 60, "the workers to notice Redis is gone")
    stack.assert_alive()
    own_redis.restart()
    t0, resumed = time.monotonic(), _Resumed(stack, job)
    wait_idle_eos(stack, job)
    _report("redis SIGKILL + restart (exactly-once)", time.monotonic() - t0, resumed)
    stack.assert_alive()
    _check_eos(stack, "heal_redis_eos")
    stack.stop_workers()


class Feeder(threading.Thread):
    """Produces records at a steady pace while a test injects faults, so that transactions
    are open at every moment a fault can land. The pause between sends paces the load; it
    synchronises nothing."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            step = max(1, len(self.records) // 100)
            for i in range(0, len(self.records), step):
                chunk = self.records[i : i + step]
                produce(self.bootstrap, self.topic, (v for _, v in chunk), (k for k, _ in chunk))
                self.sent += len(chunk)
                time.sleep(0.1)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(300)
        assert self.error is None, self.error
        assert self.sent == len(self.records)


def _clicks(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user-{rng.randrange(60)}"
        out.append((user.encode(), orjson.dumps({"user": user, "ts": BASE_TS + i * 25})))
    return out


def test_a_handover_under_load_never_kills_the_previous_owner(stack: Stack) -> None:
    """A worker restarted by a supervisor takes partitions back: the previous owner's
    producer is fenced mid-transaction and must drop the partition quietly (INFO)."""
    stack.start_worker("ho-1")
    wait_workers(stack, 1)
    job = _submit(stack, "heal_handover")
    feeder = Feeder(stack.kafka, f"{job}-in", _clicks(RECORDS, seed=13))
    feeder.start()
    _wait_progress(stack, job, 0)
    # The previous owner is busy (here: paused, mid-transaction under this load) while the
    # newcomer takes half of its partitions: it wakes up with a fenced producer.
    stack.workers["ho-1"].send_signal(signal.SIGSTOP)
    try:
        stack.start_worker("ho-2")
        took = stack.logs / "ho-2.log"
        wait_until(lambda: " took " in took.read_text(), 60, "ho-2 to take over")
    finally:
        stack.workers["ho-1"].send_signal(signal.SIGCONT)
    wait_until(lambda: _noticed(stack, "fenced"), 60, "ho-1 to notice the fencing")
    stack.assert_alive()
    for _ in range(2):  # restarts, as `paxline up` restarts a dead worker: partitions move back
        before = _agreed_total(stack, job)
        stack.kill_worker("ho-2", signal.SIGKILL)
        stack.start_worker("ho-2")
        _wait_progress(stack, job, before)
        stack.assert_alive()
    feeder.finish()
    wait_idle_eos(stack, job)
    stack.assert_alive()
    _check_eos(stack, "heal_handover")
    stack.stop_workers()


def test_redis_killed_under_at_least_once_counts_each_record_once(
    stack: Stack, own_redis: OwnRedis
) -> None:
    for w in ("ak-1", "ak-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    job = _submit(stack, "heal_redis_alo")
    values = _counted(RECORDS)
    _produce_counted(stack, f"{job}-in", values[: len(values) // 2])
    _wait_progress(stack, job, 0)
    own_redis.kill()
    _produce_counted(stack, f"{job}-in", values[len(values) // 2 :])
    wait_until(lambda: _noticed(stack, "stalled"), 60, "the workers to notice Redis is gone")
    stack.assert_alive()
    own_redis.restart()
    t0, resumed = time.monotonic(), _Resumed(stack, job)
    wait_idle(stack, job)
    _report("redis SIGKILL + restart (at-least-once)", time.monotonic() - t0, resumed)
    stack.assert_alive()
    want = Counter(v.decode().split(":", 1)[0] for v in values)
    assert read_view(stack, job, "counts") == dict(want)
    stack.stop_workers()


# Outages: short in CI, as the issue asks in `make chaos` (PAXLINE_CHAOS_LONG=1).
LONG = CHAOS_LONG or RECORDS >= 50_000
PAUSE_SECONDS = 20.0 if LONG else 6.0
QUORUM_LOST_SECONDS = 10.0 if LONG else 5.0


def _outage(seconds: float) -> None:
    """Keep a dependency away for `seconds`: the fault's duration is the point of the test
    (no condition to wait for), so this is the one deliberate sleep."""
    time.sleep(seconds)


def test_redis_paused_mid_stream_stalls_and_resumes_exactly(
    stack: Stack, own_redis: OwnRedis
) -> None:
    for w in ("rp-1", "rp-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    job = _submit(stack, "heal_redis_pause")
    values = _counted(RECORDS)
    _produce_counted(stack, f"{job}-in", values[: len(values) // 2])
    _wait_progress(stack, job, 0)
    own_redis.pause()
    try:
        _produce_counted(stack, f"{job}-in", values[len(values) // 2 :])
        _outage(PAUSE_SECONDS)
        stack.assert_alive()
    finally:
        own_redis.resume()
    t0, resumed = time.monotonic(), _Resumed(stack, job)
    wait_idle_eos(stack, job)
    _report(f"redis SIGSTOP {PAUSE_SECONDS:.0f}s (exactly-once)", time.monotonic() - t0, resumed)
    stack.assert_alive()
    _check_eos(stack, "heal_redis_pause")
    stack.stop_workers()


def test_coordinator_quorum_lost_mid_stream_no_worker_exits(stack: Stack) -> None:
    """Two of three coordinators die: no leader, no heartbeat, no checkpoint. The workers
    keep their partitions, stall their commits and catch up within 5 s of a leader being
    elected again (issue 13's target; the previous session measured 11.31 s from restart).
    The client-side cause, a checkpoint commit holding the worker's shared client for its
    whole 10 s deadline, has its failing-first test in tests/coordinator/test_client.py."""
    for w in ("cq-1", "cq-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    job = _submit(stack, "heal_quorum")
    values = _counted(RECORDS)
    _produce_counted(stack, f"{job}-in", values[: len(values) // 2])
    _wait_progress(stack, job, 0)
    lost = [1, 2]
    base = _agreed_total(stack, job)  # the last checkpoint before the quorum goes
    for node in lost:
        stack.cluster.kill(node, signal.SIGKILL)
    try:
        _produce_counted(stack, f"{job}-in", values[len(values) // 2 :])
        _outage(QUORUM_LOST_SECONDS)
        stack.assert_alive()
    finally:
        for node in lost:
            stack.cluster.start_node(node)
    t0 = time.monotonic()
    stack.cluster.wait_for_leader(60)
    t1, resumed = time.monotonic(), _Resumed(stack, job, base)
    wait_idle_eos(stack, job)
    done = time.monotonic()
    _report(f"coordinator quorum lost {QUORUM_LOST_SECONDS:.0f}s (from restart)", done - t0)
    _report(
        f"coordinator quorum lost {QUORUM_LOST_SECONDS:.0f}s (from leader elected)",
        done - t1,
        resumed,
    )
    stack.assert_alive()
    _check_eos(stack, "heal_quorum")
    stack.stop_workers()
    bound = recovery_bound()
    assert done - t1 < bound, (
        f"lag 0 only {done - t1:.2f}s after a leader was elected (bound {bound:.0f}s, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
