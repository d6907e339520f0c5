"""Each example job, run by real workers against real Kafka, Redis and coordinators, gives
exactly what a plain Python computation over the same input gives; once idle, the agreed
offsets equal the end offsets of every source partition."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import orjson
import pytest
from e2e_stack import (
    Stack,
    job_progress,
    json_values,
    produce,
    read_topic,
    read_view,
    wait_idle,
    wait_workers,
)

from examples import clicks, enrich, wordcount
from paxline.localstack.common import ServiceError, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


METRICS_PORT = free_port()


@pytest.fixture(scope="module", autouse=True)
def two_workers(stack: Stack) -> None:
    stack.start_worker("ex-1", env={"PAXLINE_METRICS_PORT": str(METRICS_PORT)})
    stack.start_worker("ex-2")
    wait_workers(stack, 2)


def _submit(stack: Stack, ref: str) -> None:
    done = stack.paxline("submit", ref, "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr


def test_wordcount_view_equals_a_plain_count(stack: Stack) -> None:
    _submit(stack, "examples/wordcount.py:job")
    rng = random.Random(7)
    vocab = ["paxos", "kafka", "redis", "Ballot", "quorum", "epoch", "fence", "42", "x-y"]
    lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    produce(stack.kafka, "text", (line.encode() for line in lines))
    wait_idle(stack, "wordcount")
    assert read_view(stack, "wordcount", "wordcount") == wordcount.expected(lines)

    # Workers report their progress: the coordinators show lag, the worker exports metrics.
    # Unkeyed input lands on few partitions (the sticky partitioner), so a partition may never
    # get a record: its agreed offset stays None (resume from the earliest) and its end is 0.
    kafka_end = {(t, p): end for t, p, _, end in job_progress(stack, "wordcount")}
    shown: list[list[dict[str, Any]]] = [[]]

    def lag_reported() -> bool:
        with stack.client() as client:
            shown[0] = client.offsets("wordcount")
        return all(
            p.lag == 0 and p.end_offset == kafka_end[(p.topic, p.partition)] for p in shown[0]
        )

    try:
        wait_until(lag_reported, 30, "workers to report zero lag for every partition")
    except ServiceError as exc:
        raise AssertionError(f"{exc}: shown {shown[0]}, Kafka ends {kafka_end}") from exc
    metrics = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics").text
    consumed = [line for line in metrics.splitlines()
                if line.startswith('paxline_worker_records_in_total{job="wordcount"}')]  # fmt: skip
    assert consumed and float(consumed[0].split()[-1]) > 0, metrics[:2000]
    assert "paxline_worker_checkpoint_seconds_bucket" in metrics


def test_enrich_output_equals_the_plain_filter_and_enrich(stack: Stack) -> None:
    _submit(stack, "examples/enrich.py:job")
    rng = random.Random(11)
    events = [{"id": i, "amount": rng.randint(-50, 100), "user": f"u{rng.randint(1, 9)}"}
              for i in range(5000)]  # fmt: skip
    produce(stack.kafka, "events", (orjson.dumps(e) for e in events),
            keys=(e["user"].encode() for e in events))  # fmt: skip
    wait_idle(stack, "enrich")
    got = json_values(read_topic(stack.kafka, "events-enriched"))
    want = enrich.expected(events)
    assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps)


def test_clicks_windows_equal_the_plain_window_computation(stack: Stack) -> None:
    """Minutes are produced one phase at a time, each phase fully processed before the next,
    so no click is late whatever the interleaving of upstream partitions; a final phase of
    far-future clicks from every user closes all earlier windows in every partition."""
    _submit(stack, "examples/clicks.py:job")
    rng = random.Random(3)
    users = [f"user-{i}" for i in range(12)]
    minute = clicks.WINDOW_MS
    base = 1_700_000_000_000 - 1_700_000_000_000 % minute
    all_clicks: list[dict[str, object]] = []
    for phase in range(4):
        batch = [{"user": rng.choice(users), "ts": base + phase * minute + rng.randrange(minute)}
                 for _ in range(400)]  # fmt: skip
        all_clicks += batch
        produce(stack.kafka, "clicks", (orjson.dumps(c) for c in batch),
                keys=(str(c["user"]).encode() for c in batch))  # fmt: skip
        wait_idle(stack, "clicks")
    closing = [{"user": u, "ts": base + 100 * minute} for u in users]
    all_clicks += closing
    produce(stack.kafka, "clicks", (orjson.dumps(c) for c in closing))
    wait_idle(stack, "clicks")
    got = json_values(read_topic(stack.kafka, "clicks-per-user"))
    want = [w for w in clicks.expected(all_clicks) if w["window_start"] < base + 100 * minute]
    assert len(want) > 12
    assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps)
