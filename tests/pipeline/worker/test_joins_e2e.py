"""Stream-table joins (issue 18) on real Kafka, Redis, coordinators and worker processes: the
example's output equals a plain-Python join, and kill -9 of workers while they join leaves
the exactly-once output exact (the checker replays the merged partitions; a plain-Python
join over the final table must agree too)."""

from __future__ import annotations

import random
import signal
from collections import Counter
from typing import Any

import orjson
import pytest
from e2e_stack import Stack, produce, read_topic, wait_idle_eos, wait_workers
from eos_checker import check

from examples import orders
from paxline.localstack.common import wait_until
from pipeline.loading import load_job

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"


def _submit(stack: Stack, ref: str) -> None:
    done = stack.paxline("submit", ref, "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr


def _canon(items: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items)


def _table(n: int, rng: random.Random) -> list[tuple[str, dict[str, Any] | None]]:
    """Customers with updates and a few deletes, in order."""
    rows: list[tuple[str, dict[str, Any] | None]] = []
    for i in range(n):
        key = f"c{rng.randrange(50)}"
        rows.append((key, None if rng.random() < 0.1 else {"name": f"n{i}", "tier": i % 3}))
    return rows


def _produce_table(stack: Stack, topic: str, rows: list[tuple[str, Any]]) -> None:
    produce(stack.kafka, topic, (b"" if r is None else orjson.dumps(r) for _, r in rows),
            keys=(k.encode() for k, _ in rows))  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def workers(stack: Stack) -> None:
    stack.start_worker("join-1")
    stack.start_worker("join-2")
    wait_workers(stack, 2)


def test_orders_example_equals_a_plain_python_join(stack: Stack) -> None:
    _submit(stack, "examples/orders.py:job")
    rng = random.Random(1)
    rows = [(k, r) for k, r in _table(300, rng) if r is not None]  # produce() sends no nulls
    _produce_table(stack, "customers", rows)
    wait_idle_eos(stack, "orders")  # every row is in the join's state before any order
    orders_in = [{"customer": f"c{rng.randrange(60)}", "amount": i} for i in range(3000)]
    produce(stack.kafka, "orders", (orjson.dumps(o) for o in orders_in),
            keys=(o["customer"].encode() for o in orders_in))  # fmt: skip
    wait_idle_eos(stack, "orders")
    got = [orjson.loads(v) for _, v, _ in read_topic(stack.kafka, "orders-enriched")]
    assert _canon(got) == _canon(orders.expected(rows, orders_in))


def test_exactly_once_across_kill_9_while_joining(stack: Stack) -> None:
    _submit(stack, f"{JOBS}:eos_join")
    rng = random.Random(2)
    rows = [(k, r) for k, r in _table(200, rng) if r is not None]
    _produce_table(stack, "eosjoin-customers", rows)
    wait_idle_eos(stack, "eosjoin")
    orders_in = [{"customer": f"c{rng.randrange(60)}", "n": i} for i in range(20000)]
    chunks = 4
    size = len(orders_in) // chunks
    for c in range(chunks):
        part = orders_in[c * size : (c + 1) * size]
        with stack.client() as client:
            before = sum(p.offset or 0 for p in client.offsets("eosjoin"))
        produce(stack.kafka, "eosjoin-in", (orjson.dumps(o) for o in part),
                keys=(o["customer"].encode() for o in part))  # fmt: skip

        def progressed(b: int = before) -> bool:
            with stack.client() as client:
                return sum(p.offset or 0 for p in client.offsets("eosjoin")) > b

        wait_until(progressed, 90, "progress")
        victim = rng.choice(["join-1", "join-2"])
        stack.kill_worker(victim, signal.SIGKILL)  # mid-stream: joins of this chunk in flight
        stack.start_worker(victim)
    wait_idle_eos(stack, "eosjoin", timeout=300)
    got = [orjson.loads(v) for _, v, _ in read_topic(stack.kafka, "eosjoin-out")]
    table = dict(rows)
    want = [
        {"value": o, "table": table[o["customer"]]} for o in orders_in if o["customer"] in table
    ]  # fmt: skip  (inner join)
    assert _canon(got) == _canon(want)
    report = check(load_job(f"{JOBS}:eos_join"), stack.kafka, stack.redis)
    assert report.ok, str(report)
    assert report.outputs >= len(want)


def test_stream_stream_join_exactly_once_across_kill_9(stack: Stack) -> None:
    """examples/clickviews.py (with more grace) under kill -9: every click/view pair within
    60 s, exactly once."""
    from examples import clickviews

    _submit(stack, f"{JOBS}:eos_stream_join")
    rng = random.Random(3)
    base = 1_700_000_000_000
    views = [{"ad": rng.randrange(5), "user": f"u{rng.randrange(8)}", "ts": base + i * 700}
             for i in range(1500)]  # fmt: skip
    clicks = [{"ad": rng.randrange(5), "user": f"u{rng.randrange(8)}", "ts": base + i * 700 + 350}
              for i in range(1500)]  # fmt: skip
    chunks = 3
    size = len(clicks) // chunks
    for c in range(chunks):
        with stack.client() as client:
            before = sum(p.offset or 0 for p in client.offsets("eoscv"))
        vs, cs = views[c * size : (c + 1) * size], clicks[c * size : (c + 1) * size]
        produce(stack.kafka, "eoscv-views", (orjson.dumps(v) for v in vs),
                keys=(clickviews.pair_key(v).encode() for v in vs))  # fmt: skip
        produce(stack.kafka, "eoscv-clicks", (orjson.dumps(c) for c in cs),
                keys=(clickviews.pair_key(c).encode() for c in cs))  # fmt: skip

        def progressed(b: int = before) -> bool:
            with stack.client() as client:
                return sum(p.offset or 0 for p in client.offsets("eoscv")) > b

        wait_until(progressed, 90, "progress")
        victim = rng.choice(["join-1", "join-2"])
        stack.kill_worker(victim, signal.SIGKILL)
        stack.start_worker(victim)
    wait_idle_eos(stack, "eoscv", timeout=300)
    got = [orjson.loads(v) for _, v, _ in read_topic(stack.kafka, "eoscv-out")]
    want = [{"value": c, "table": v} for c in clicks for v in views
            if clickviews.pair_key(c) == clickviews.pair_key(v)
            and abs(c["ts"] - v["ts"]) <= clickviews.WITHIN_MS]  # fmt: skip
    assert len(want) > 100
    assert _canon(got) == _canon(want)
    report = check(load_job(f"{JOBS}:eos_stream_join"), stack.kafka, stack.redis)
    assert report.ok, str(report)
