"""Exactly-once under faults (docs/architecture.md, sec. 4 and 5): whatever workers or coordinators
are killed, and whatever a paused zombie does when it wakes up, the committed output and the
Redis state equal one failure-free computation over the same input (the checker in
`eos_checker.py` says what is lost, duplicated or wrong if not).

`PAXLINE_CHAOS_RECORDS` sets the input size: 20,000 in CI; `make chaos` runs 200,000."""

from __future__ import annotations

import json
import os
import random
import signal

import orjson
import pytest
from e2e_stack import Stack, produce, wait_idle_eos, wait_workers
from eos_checker import Report, check, read_partitions

from paxline.localstack.common import wait_until
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
RECORDS = int(os.environ.get("PAXLINE_CHAOS_RECORDS", "20000"))
BASE_TS = 1_700_000_000_000


def _clicks(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Keyed by user, so each repartition partition is fed by exactly one source partition
    and the per-partition order (hence the window emissions) is the same in every run."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user-{rng.randrange(60)}"
        out.append((user.encode(), orjson.dumps({"user": user, "ts": BASE_TS + i * 25})))
    return out


def _submit(stack: Stack, attr: str) -> None:
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr


def _produce(stack: Stack, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    produce(stack.kafka, topic, (v for _, v in records), keys=(k for k, _ in records))


def _agreed_total(stack: Stack, job: str) -> int:
    with stack.client() as client:
        return sum(p.offset or 0 for p in client.offsets(job))


def _check(stack: Stack, attr: str) -> Report:
    report = check(load_job(f"{JOBS}:{attr}"), stack.kafka, stack.redis)
    assert report.ok, str(report)
    assert report.outputs > 0 or report.state_entries > 0
    return report


def test_sigkill_of_workers_again_and_again(stack: Stack) -> None:
    rng = random.Random(1)
    workers = ["ew-1", "ew-2", "ew-3"]
    for w in workers:
        stack.start_worker(w)
    wait_workers(stack, 3)
    _submit(stack, "eos_worker_chaos")
    clicks = _clicks(RECORDS, seed=1)
    chunks = 8
    size = len(clicks) // chunks + 1
    for i in range(chunks):
        before = _agreed_total(stack, "eoswk")
        _produce(stack, "eoswk-in", clicks[i * size : (i + 1) * size])
        # Kill only once this chunk is being processed, so each kill lands mid-stream.
        wait_until(lambda b=before: _agreed_total(stack, "eoswk") > b, 60, "progress")
        victim = rng.choice(workers)
        stack.kill_worker(victim, signal.SIGKILL)
        stack.start_worker(victim)
    wait_idle_eos(stack, "eoswk")
    _check(stack, "eos_worker_chaos")
    stack.stop_workers()


def test_sigkill_of_the_coordinator_leader_again_and_again(stack: Stack) -> None:
    for w in ("el-1", "el-2"):
        stack.start_worker(w)
    wait_workers(stack, 2)
    _submit(stack, "eos_leader_chaos")
    clicks = _clicks(RECORDS, seed=2)
    chunks = 4
    size = len(clicks) // chunks + 1
    for i in range(chunks):
        before = _agreed_total(stack, "eoslk")
        _produce(stack, "eoslk-in", clicks[i * size : (i + 1) * size])
        wait_until(lambda b=before: _agreed_total(stack, "eoslk") > b, 60, "progress")
        leader = stack.cluster.wait_for_leader(30)
        stack.cluster.kill(leader, signal.SIGKILL)
        stack.cluster.wait_for_leader(30, exclude=leader)
        stack.cluster.start_node(leader)
    wait_idle_eos(stack, "eoslk")
    _check(stack, "eos_leader_chaos")
    stack.stop_workers()


def test_a_paused_zombie_changes_nothing_when_it_wakes_up(stack: Stack) -> None:
    stack.start_worker("ez-1")
    stack.start_worker("ez-2")
    wait_workers(stack, 2)
    _submit(stack, "eos_zombie")
    clicks = _clicks(RECORDS // 2, seed=3)
    _produce(stack, "eoszombie-in", clicks[: len(clicks) // 2])
    zombie = stack.workers["ez-2"]
    zombie.send_signal(signal.SIGSTOP)
    try:
        # Its session lapses; ez-1 takes every partition over (new epochs everywhere).
        def moved() -> bool:
            with stack.client() as client:
                return {p.owner for p in client.offsets("eoszombie")} == {"ez-1"}

        wait_until(moved, 60, "the zombie's partitions to move")
        _produce(stack, "eoszombie-in", clicks[len(clicks) // 2 :])
        wait_idle_eos(stack, "eoszombie")
    finally:
        zombie.send_signal(signal.SIGCONT)
    # Awake, the zombie tries to finish what it had in hand: Kafka, Redis and the
    # coordinators must all refuse it. Wait until it has noticed (it logs the fencing).
    log = stack.logs / "ez-2.log"
    wait_until(lambda: "fenced" in log.read_text() or "released" in log.read_text(), 60,
               "the zombie to notice it was fenced")  # fmt: skip
    wait_idle_eos(stack, "eoszombie")
    _check(stack, "eos_zombie")
    stack.stop_workers()


@pytest.mark.parametrize(
    ("step", "attr", "recovery"),
    [
        # Redis applied a batch whose transaction never committed: undo it.
        ("after_a:3", "eos_crash_after_a", "rolled Redis back"),
        # The transaction committed but its checkpoint never reached Paxos: agree it first.
        ("after_b:3", "eos_crash_after_b", "caught up with Kafka"),
        # Everything committed: the next owner simply resumes at the agreed offset.
        ("after_c:1", "eos_crash_after_c", "took"),
    ],
)
def test_a_crash_at_each_step_boundary_is_reconciled(
    stack: Stack, step: str, attr: str, recovery: str
) -> None:
    name = load_job(f"{JOBS}:{attr}").name
    crasher = f"crash-{name}"
    stack.start_worker(crasher, env={"PAXLINE_CRASH_AT": step})
    wait_workers(stack, 1)
    _submit(stack, attr)
    values = [f"k{i % 30}:{i}".encode() for i in range(6000)]
    keys = [v.split(b":")[0] for v in values]
    produce(stack.kafka, f"{name}-in", values[:3000], keys=keys[:3000])
    crashed = stack.workers.pop(crasher)
    assert crashed.wait(60) == 137, "the crash hook did not fire"
    if step.startswith("after_b"):
        # `paxline offsets` shows the agreed offset trailing Kafka's commit point.
        shown = stack.paxline("offsets", name, "--json")
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert any(r["trails_kafka"] for r in rows), rows
        assert all(r["kafka_committed"] is None or r["kafka_committed"] >= (r["offset"] or 0)
                   for r in rows)  # fmt: skip
    produce(stack.kafka, f"{name}-in", values[3000:], keys=keys[3000:])
    stack.start_worker(f"rescue-{name}")
    wait_idle_eos(stack, name)
    log = (stack.logs / f"rescue-{name}.log").read_text()
    assert recovery in log, f"expected the takeover to log {recovery!r}"
    _check(stack, attr)
    stack.stop_workers()


def test_the_checker_catches_a_planted_duplicate_and_a_planted_loss(stack: Stack) -> None:
    stack.start_worker("ec-1")
    wait_workers(stack, 1)
    _submit(stack, "eos_checker_teeth")
    _produce(stack, "eoscheck-in", _clicks(3000, seed=4))
    wait_idle_eos(stack, "eoscheck")
    _check(stack, "eos_checker_teeth")
    stack.stop_workers()
    job = load_job(f"{JOBS}:eos_checker_teeth")

    # A duplicate: one committed output record appears twice.
    first = next(r for rs in read_partitions(stack.kafka, "eoscheck-out").values() for r in rs)
    produce(stack.kafka, "eoscheck-out", [first.value], keys=[first.key or b""])
    report = check(job, stack.kafka, stack.redis)
    assert len(report.duplicated) == 1 and not report.lost, str(report)
    assert repr(first.value) in report.duplicated[0]

    # A loss: input that closes windows, never processed (no worker runs any more).
    late = [(b"user-1", orjson.dumps({"user": "user-1", "ts": BASE_TS + 10**9}))]
    _produce(stack, "eoscheck-in", late)
    report = check(job, stack.kafka, stack.redis)
    assert report.lost, str(report)
