"""Session and sliding windows and idle timers (issue 18) on real Kafka, Redis, coordinators
and worker processes: outputs equal a plain-Python computation of the same semantics, the
last window of a quiet partition is emitted on time by the idle timer, and exactly-once stays
exact across kill -9 of workers in the middle of session windows."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from e2e_stack import Stack, produce, read_topic, wait_idle_eos, wait_workers
from eos_checker import check

from examples import sessions, sliding
from paxline.localstack.common import wait_until
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"
BASE_TS = 1_700_000_000_000


def _submit(stack: Stack, ref: str) -> None:
    done = stack.paxline("submit", ref, "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr


def _outputs(stack: Stack, topic: str) -> list[Any]:
    return [orjson.loads(v) for _, v, _ in read_topic(stack.kafka, topic)]


def _canon(items: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items)


def _wait_outputs(stack: Stack, topic: str, n: int, timeout: float) -> list[Any]:
    got: list[list[Any]] = [[]]

    def enough() -> bool:
        got[0] = _outputs(stack, topic)
        return len(got[0]) >= n

    try:
        wait_until(enough, timeout, f"{n} outputs on {topic}", interval=1.0)
    except Exception as exc:
        raise AssertionError(f"{exc}: {len(got[0])} so far") from exc
    return got[0]


def _per_key(events: list[dict[str, Any]], key: str) -> dict[int, list[dict[str, Any]]]:
    """Events per key, in order. Each key lives on one partition and the input is in event-time
    order, so nothing is late and a computation per key equals one per partition."""
    out: dict[int, list[dict[str, Any]]] = {}
    for i, k in enumerate(sorted({e[key] for e in events})):
        out[i] = [e for e in events if e[key] == k]
    return out


def _views(n: int, seed: int) -> list[dict[str, Any]]:
    """Page views of 30 users: sessions of views 100 ms..3 s apart, 30..120 s between a
    user's sessions, all in event-time order (produced keyed by user: in order per key)."""
    rng = random.Random(seed)
    nxt = {f"user-{u}": BASE_TS + rng.randrange(60_000) for u in range(30)}
    out = []
    for _ in range(n):
        user = min(nxt, key=lambda u: nxt[u])
        out.append({"user": user, "ts": nxt[user]})
        step = rng.randrange(100, 3_000) if rng.random() < 0.8 else rng.randrange(30_000, 120_000)
        nxt[user] += step
    return out


@pytest.fixture(scope="module", autouse=True)
def workers(stack: Stack) -> None:
    stack.start_worker("win-1")
    stack.start_worker("win-2")
    wait_workers(stack, 2)


def test_session_example_equals_plain_python_and_the_idle_timer_closes_the_last_ones(
    stack: Stack,
) -> None:
    _submit(stack, "examples/sessions.py:job")
    views = _views(3000, seed=1)
    produce(stack.kafka, "page-views", (orjson.dumps(v) for v in views),
            keys=(v["user"].encode() for v in views))  # fmt: skip
    want: list[Any] = []
    for per_user in _per_key(views, "user").values():
        want += sessions.expected(per_user)
    # The last session of every user closes only through the idle timer (no record follows).
    got = _wait_outputs(stack, "sessions-per-user", len(want), 120)
    assert _canon(got) == _canon(want)

    # A live view: its session [ts, ts + 10 s) is emitted once the watermark, following the
    # wall clock while the partition is quiet, reaches ts + 10 s + 2 s - not when a record
    # comes, and not before.
    now = int(time.time() * 1000)
    live = {"user": "live-user", "ts": now}
    produce(stack.kafka, "page-views", [orjson.dumps(live)], keys=[b"live-user"])
    got = _wait_outputs(stack, "sessions-per-user", len(want) + 1, 60)
    emitted = time.time() * 1000
    [session] = [o for o in got if o["key"] == "live-user"]
    assert session == {"key": "live-user", "window_start": now, "window_end": now + 10_000,
                       "value": 1}  # fmt: skip
    late_by = emitted - (now + sessions.GAP_MS + sessions.LATENESS_MS)
    assert -1_000 <= late_by <= 15_000, f"emitted {late_by:.0f} ms after end + lateness"


def test_sliding_example_equals_plain_python(stack: Stack) -> None:
    _submit(stack, "examples/sliding.py:job")
    rng = random.Random(2)
    payments = []
    ts = BASE_TS
    for i in range(2000):
        ts += rng.choice([0, 50, 400, 1_500, 4_000, 15_000])
        payments.append({"card": f"card-{rng.randrange(25)}", "ts": ts, "amount": i % 97})
    produce(stack.kafka, "payments", (orjson.dumps(p) for p in payments),
            keys=(p["card"].encode() for p in payments))  # fmt: skip
    want: list[Any] = []
    for per_card in _per_key(payments, "card").values():
        # Per card, not per partition: lateness depends on the partition's watermark, so the
        # input is in event-time order overall and nothing is late either way.
        want += sliding.expected(per_card)
    got = _wait_outputs(stack, "payments-last-10s", len(want), 120)
    assert _canon(got) == _canon(want)


def _session_reference(events: list[dict[str, Any]], gap: int) -> list[Any]:
    """Sessions per user, computed the obvious way: sort by time, split at gaps >= gap."""
    out = []
    by_user: dict[str, list[int]] = {}
    for e in events:
        by_user.setdefault(e["user"], []).append(e["ts"])
    for user, stamps in by_user.items():
        stamps.sort()
        start = prev = stamps[0]
        n = 0
        for t in stamps:
            if t - prev >= gap:
                out.append({"key": user, "window_start": start, "window_end": prev + gap,
                            "value": n})  # fmt: skip
                start, n = t, 0
            prev = t
            n += 1
        out.append({"key": user, "window_start": start, "window_end": prev + gap, "value": n})
    return out


def test_exactly_once_across_kill_9_in_the_middle_of_session_windows(stack: Stack) -> None:
    from jobs_for_tests import SESSION_GAP_MS

    _submit(stack, f"{JOBS}:eos_sessions")
    rng = random.Random(3)
    chunks = []
    for c in range(4):
        # Each chunk an hour of event time after the previous one: the wall-clock time the
        # test spends between chunks (killing, restarting) can only close sessions that are
        # complete, never split one. Within a chunk every user's session runs through it.
        base = BASE_TS + c * 3_600_000
        chunk = [{"user": f"user-{rng.randrange(40)}", "ts": base + i * 20} for i in range(2500)]
        chunks.append(chunk)
    killed = 0
    for chunk in chunks:
        with stack.client() as client:
            before = sum(p.offset or 0 for p in client.offsets("eossess"))
        produce(stack.kafka, "eossess-in", (orjson.dumps(v) for v in chunk),
                keys=(v["user"].encode() for v in chunk))  # fmt: skip

        def progressed(b: int = before) -> bool:
            with stack.client() as client:
                return sum(p.offset or 0 for p in client.offsets("eossess")) > b

        wait_until(progressed, 90, "progress")
        victim = rng.choice(["win-1", "win-2"])
        stack.kill_worker(victim, signal.SIGKILL)  # sessions of this chunk are open now
        killed += 1
        stack.start_worker(victim)
    events = [e for chunk in chunks for e in chunk]
    want = _session_reference(events, SESSION_GAP_MS)
    got = _wait_outputs(stack, "eossess-out", len(want), 240)
    assert _canon(got) == _canon(want)
    wait_idle_eos(stack, "eossess")  # the last tick processed too, before reading state
    report = check(load_job(f"{JOBS}:eos_sessions"), stack.kafka, stack.redis)
    assert report.ok, str(report)
    assert killed == 4
