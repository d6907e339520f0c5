"""Each example job, run through the executor, equals its plain-Python reference function.

Inputs are spread over the source partitions; repartitioning, state and views go through the
same steps a worker takes (see tests/pipeline/executor/memory_state.py).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from examples import clicks, enrich, wordcount
from pipeline.executor import compile_job
from pipeline.loading import load_job
from pipeline.spec import build_spec
from tests.pipeline.executor.memory_state import (
    json_records,
    partition_of,
    records,
    run_pipeline,
)

LINES = [
    "The quick brown fox",
    "jumps over the lazy dog",
    "the END, the end 42 times",
    "",
    "Fox fox FOX",
]


def test_wordcount_view_equals_counter() -> None:
    plan = compile_job(wordcount.job)
    inputs = {
        p: records("text", [line.encode() for line in LINES[p::4]], partition=p) for p in range(4)
    }
    out = run_pipeline(plan, inputs)
    assert {k: orjson.loads(v) for k, v in out.view.items()} == wordcount.expected(LINES)
    assert out.dead == [] and out.sink == []


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab cAB1\u00e9", max_size=12), max_size=25),
    batch=st.integers(1, 8),
)
def test_wordcount_any_text_any_batching(lines: list[str], batch: int) -> None:
    plan = compile_job(wordcount.job)
    inputs = {p: records("text", [s.encode() for s in lines[p::4]], partition=p) for p in range(4)}
    out = run_pipeline(plan, inputs, batch_size=batch)
    assert {k: orjson.loads(v) for k, v in out.view.items()} == wordcount.expected(lines)


def clicks_reference(values: list[dict[str, Any]], source_partitions: int) -> list[Any]:
    """Each repartition partition sees, in order, the clicks routed to it from source
    partition 0, then 1, ... (the driver drains source partitions in order); windows and
    watermarks are per partition, so the reference runs once per repartition partition."""
    arrival = [v for p in range(source_partitions) for v in values[p::source_partitions]]
    out: list[Any] = []
    for p in range(4):
        mine = [v for v in arrival if partition_of(v["user"].encode(), 4) == p]
        out.extend(clicks.expected(mine))
    return out


def by_window(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda v: (v["window_start"], v["key"]))


def test_clicks_windows_equal_reference() -> None:
    t0 = 1_700_000_040_000  # a minute boundary
    seq = [("ann", 0), ("bob", 5_000), ("ann", 61_000), ("ann", 20_000), ("ann", 69_000),
           ("cy", 71_000), ("ann", 50_000), ("bob", 130_000), ("ann", 135_000),
           ("ann", 10_000), ("cy", 200_000), ("ann", 300_000)]  # fmt: skip
    values = [{"user": u, "ts": t0 + dt, "page": "/"} for u, dt in seq]
    plan = compile_job(clicks.job)
    out = run_pipeline(plan, {0: json_records("clicks", values)})
    got = out.sink_values()
    assert by_window(got) == by_window(clicks_reference(values, 1))
    assert [r.key for r in out.sink] == [v["key"].encode() for v in got]
    assert {"key": "ann", "window_start": t0, "window_end": t0 + 60_000, "value": 2} in got
    assert out.late >= 1  # ann@10s arrives after window [0, 60s) closed at watermark 135s


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["ann", "bob", "cy", "dee"]), st.integers(0, 400_000)),
        max_size=40,
    ),
    batch=st.integers(1, 10),
)
def test_clicks_any_input_any_batching(events: list[tuple[str, int]], batch: int) -> None:
    values = [{"user": u, "ts": t} for u, t in events]
    plan = compile_job(clicks.job)
    inputs = {p: json_records("clicks", values[p::4], partition=p) for p in range(4)}
    out = run_pipeline(plan, inputs, batch_size=batch)
    assert by_window(out.sink_values()) == by_window(clicks_reference(values, 4))
    still_open = sum(
        msgspec.msgpack.decode(raw)
        for data in out.state_data().values()
        for k, raw in data.items()
        if k.startswith("s1:w:")
    )
    emitted = sum(v["value"] for v in out.sink_values())
    assert emitted + still_open + out.late == len(events)


def test_enrich_output_equals_reference_and_keeps_keys() -> None:
    events: list[Any] = [
        {"id": 1, "amount": 5},
        {"id": 2, "amount": 0},
        {"id": 3, "amount": -2},
        {"id": 4, "amount": 1500.5},
        {"id": 5},
    ]
    recs = [
        r.__class__(r.topic, r.partition, r.offset, f"k{i}".encode(), r.value, r.timestamp_ms)
        for i, r in enumerate(json_records("events", events))
    ]
    out = run_pipeline(compile_job(enrich.job), {0: recs})
    assert out.sink_values() == enrich.expected(events)
    assert [r.key for r in out.sink] == [b"k0", b"k3"]
    assert {r.topic for r in out.sink} == {"events-enriched"}


def test_examples_load_by_both_entrypoint_forms_and_specs_are_accepted() -> None:
    for name in ("wordcount", "clicks", "enrich"):
        by_path = load_job(f"examples/{name}.py:job")
        by_module = load_job(f"examples.{name}:job")
        assert by_path is by_module
        spec = build_spec(by_path, f"examples/{name}.py:job")
        assert validate_spec(msgspec.convert(spec, JobSpec)) is None


def test_rabbitmq_wordcount_view_equals_counter() -> None:
    """Issue 19: the RabbitMQ stream example computes what its reference says (the stream
    itself is exercised end to end in tests/pipeline/worker/test_rabbitmq_e2e.py)."""
    from examples import rabbitmq_wordcount

    plan = compile_job(rabbitmq_wordcount.job)
    topic = plan.stages[0].topics[0]
    assert topic == "paxline.rabbitmq_wordcount.rabbitmq.text"
    out = run_pipeline(plan, {0: records(topic, [line.encode() for line in LINES])})
    assert {k: orjson.loads(v) for k, v in out.view.items()} == rabbitmq_wordcount.expected(LINES)


def test_rabbitmq_queue_example_latest_totals_equal_the_plain_sums() -> None:
    """Issue 19: the queue example's last total per customer (what `totals` prints) equals a
    plain-Python sum of the positive orders (queues end to end:
    tests/pipeline/worker/test_rabbitmq_queue_e2e.py)."""
    from examples import rabbitmq_queue

    plan = compile_job(rabbitmq_queue.job)
    topic = plan.stages[0].topics[0]
    assert topic == "paxline.rabbitmq_orders.rabbitmq-queue.orders"
    items = rabbitmq_queue.orders(500)
    out = run_pipeline(plan, {0: json_records(topic, items)}, batch_size=64)
    latest = {(r.key or b"").decode(): orjson.loads(r.value or b"") for r in out.sink}
    assert latest == rabbitmq_queue.expected(items)
    spec = build_spec(rabbitmq_queue.job, "examples/rabbitmq_queue.py:job")
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None
