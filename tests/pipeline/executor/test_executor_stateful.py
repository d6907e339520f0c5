"""Keyed aggregations and event-time windows: state, emissions, lateness, rollback, replay."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StateUnavailable, TransientError
from pipeline.executor import InRecord, Plan, StateAccessError, compile_job
from pipeline.job import Job, hopping, tumbling
from tests.pipeline.executor.memory_state import MemoryState, Outcome, run_pipeline


def keyed(values: list[Any], *, ts: list[int] | None = None, key: str = "k") -> list[InRecord]:
    """Stage-1 records as a key_by would have written them: key, msgpack [ts, value]."""
    stamps = ts or [1000 + i for i in range(len(values))]
    return [
        InRecord("r", 0, i, (v[key] if isinstance(v, dict) else str(v)).encode(),
                 msgspec.msgpack.encode([t, v]), 0)
        for i, (v, t) in enumerate(zip(values, stamps, strict=True))
    ]  # fmt: skip


def agg_job(build: Any, sink: str = "redis") -> Job:
    job: Job = build(Job("a").source("in", partitions=1, value="json").key_by(lambda v: v["k"]))
    return job.to_redis("view") if sink == "redis" else job.to_kafka("out")


def view_of(res: Any) -> dict[str, Any]:
    return {k: orjson.loads(v) for k, v in res.view_writes.items()}


@pytest.mark.parametrize(
    ("build", "view"),
    [
        (lambda j: j.count(), {"a": 3, "b": 1}),
        (lambda j: j.reduce(lambda acc, v: acc + v["n"], 0), {"a": 6, "b": 10}),
        (lambda j: j.reduce(lambda acc, v: {**acc, "n": acc["n"] + v["n"]}),
         {"a": {"k": "a", "n": 6}, "b": {"k": "b", "n": 10}}),
        (lambda j: j.aggregate(list, lambda acc, v: [*acc, v["n"]]), {"a": [1, 2, 3], "b": [10]}),
        (lambda j: j.aggregate((0, 0), lambda acc, v: (acc[0] + 1, acc[1] + v["n"])),
         {"a": [3, 6], "b": [1, 10]}),
        (lambda j: j.count().map(lambda n: n * 100), {"a": 300, "b": 100}),
    ],
    ids=["count", "reduce-initial", "reduce-first-value", "aggregate-factory", "aggregate-tuple",
         "map-after-count"],
)  # fmt: skip
def test_aggregations_update_the_view_per_key(build: Any, view: dict[str, Any]) -> None:
    values = [{"k": "a", "n": 1}, {"k": "b", "n": 10}, {"k": "a", "n": 2}, {"k": "a", "n": 3}]
    res = compile_job(agg_job(build)).process(1, keyed(values), MemoryState())
    assert view_of(res) == view
    assert res.dead_letters == []
    assert all(k.startswith("s1:a:") for k in res.state_writes)


def test_a_kafka_sink_after_an_aggregation_gets_every_update_keyed_by_the_key() -> None:
    values = [{"k": "a"}, {"k": "b"}, {"k": "a"}]
    res = compile_job(agg_job(lambda j: j.count(), "kafka")).process(
        1, keyed(values), MemoryState()
    )
    assert [(o.key, o.value) for o in res.outputs] == [(b"a", b"1"), (b"b", b"1"), (b"a", b"2")]


def test_a_failing_reducer_rolls_back_its_record_and_the_rest_continue() -> None:
    def add(acc: int, v: dict[str, int]) -> int:
        return acc + 10 // v["n"]

    plan = compile_job(agg_job(lambda j: j.reduce(add, 0)))
    values = [{"k": "a", "n": 1}, {"k": "a", "n": 0}, {"k": "a", "n": 5}]
    res = plan.process(1, keyed(values), MemoryState())
    assert view_of(res) == {"a": 12}
    [dead] = res.dead_letters
    assert dead.record.offset == 1 and dead.stage == "reduce#2"
    assert dead.error == "ZeroDivisionError: integer division or modulo by zero"


def test_failure_on_a_later_element_of_a_record_undoes_its_earlier_elements() -> None:
    job = (
        Job("a")
        .source("in", partitions=1, value="json")
        .key_by(lambda v: "all")
        .flat_map(lambda xs: xs)
        .reduce(lambda acc, x: acc + 10 // x, 0)
        .to_kafka("out")
    )
    recs = keyed([[1, 2], [5, 0], [10]], key="")  # record 1: 5 is fine, 0 raises
    recs = [InRecord(r.topic, 0, r.offset, b"all", r.value, 0) for r in recs]
    res = compile_job(job).process(1, recs, MemoryState())
    assert [orjson.loads(o.value) for o in res.outputs] == [10, 15, 16]
    assert [d.record.offset for d in res.dead_letters] == [1]
    assert res.state_writes["s1:a:all"] == msgspec.msgpack.encode(16)


def test_non_serialisable_accumulators_are_dead_letters_naming_the_type() -> None:
    class Opaque:
        pass

    plan = compile_job(agg_job(lambda j: j.aggregate(0, lambda acc, v: Opaque())))
    res = plan.process(1, keyed([{"k": "a"}]), MemoryState())
    assert res.state_writes == {} and res.view_writes == {}
    assert "Opaque cannot be serialised" in res.dead_letters[0].error


def test_state_read_failures_propagate_instead_of_dead_lettering() -> None:
    class Down:
        def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
            raise ConnectionError("redis down")

    plan = compile_job(agg_job(lambda j: j.count()))
    with pytest.raises(StateAccessError, match="redis down"):
        plan.process(1, keyed([{"k": "a"}]), Down())


@pytest.mark.parametrize(
    "build",
    [
        lambda j: j.count(),
        lambda j: j.window(tumbling(seconds=60)).count(),
    ],
    ids=["count", "tumbling"],
)
def test_an_unavailable_store_stays_a_transient_fault_for_the_worker(build: Any) -> None:
    """The store's own transient error (Redis unreachable, timing out, LOADING, a cluster
    that is down) must reach the worker as a TransientError, so the partition stalls and is
    retaken; a plain StateAccessError ends the worker as a bug (found by make chaos: both
    workers exited on "reading state failed: StateUnavailable: Redis unreachable")."""

    class Down:
        def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
            raise StateUnavailable("Redis unreachable: Error 111 connecting")

    plan = compile_job(agg_job(build))
    with pytest.raises(TransientError, match="Redis unreachable") as caught:
        plan.process(1, keyed([{"k": "a"}]), Down())
    assert isinstance(caught.value, StateAccessError)
    assert isinstance(caught.value, StateUnavailable)  # paxline status says "Redis unreachable"


def test_a_key_by_after_an_aggregation_starts_a_third_stage() -> None:
    job = (
        Job("hist")
        .source("in", partitions=2, value="str")
        .key_by(lambda w: w)
        .count()
        .key_by(lambda n: "total")
        .count()
        .to_redis("updates")
    )
    plan = compile_job(job)
    assert [s.topics[0] for s in plan.stages] == [
        "in", "paxline.hist.repartition.1", "paxline.hist.repartition.2"
    ]  # fmt: skip
    words = [b"x", b"y", b"x"]
    out = run_pipeline(plan, {0: [InRecord("in", 0, i, None, w, 0) for i, w in enumerate(words)]})
    assert out.view == {"total": b"3"}  # three count updates reached the last stage


# ---------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------


def window_job(spec: Any = None, lateness: float = 0, ts: Any = None) -> Plan:
    job = (
        Job("w")
        .source("in", partitions=1, value="json")
        .key_by(lambda v: v["k"])
        .window(spec or tumbling(milliseconds=100), allowed_lateness=lateness, timestamp=ts)
        .count()
        .to_kafka("out")
    )
    return compile_job(job)


def emissions(res: Any) -> list[tuple[str, int, int]]:
    values = [orjson.loads(o.value) for o in res.outputs]
    return [(v["key"], v["window_start"], v["value"]) for v in values]


def test_a_tumbling_window_emits_once_on_close_and_forgets_its_state() -> None:
    plan = window_job()
    state = MemoryState()
    first = plan.process(1, keyed([{"k": "a"}, {"k": "b"}, {"k": "a"}], ts=[10, 20, 99]), state)
    assert first.outputs == []  # watermark 99 < end 100
    state.apply(first)
    second = plan.process(1, keyed([{"k": "a"}], ts=[100]), state)
    assert emissions(second) == [("a", 0, 2), ("b", 0, 1)]
    assert [o.key for o in second.outputs] == [b"a", b"b"]
    state.apply(second)
    assert sorted(state.data) == ["s1:w:100:a", "s1:wi", "s1:wk:100", "s1:wm"]
    assert msgspec.msgpack.decode(state.data["s1:wm"]) == 100


@pytest.mark.parametrize(
    ("stamps", "lateness_s", "emitted", "late"),
    [
        ([50, 120, 60], 0, [("k", 0, 1)], 1),  # window [0,100) closed at watermark 120
        ([50, 120, 60, 150], 0.05, [("k", 0, 2)], 0),  # closes at 150: 60 still counted
        ([50, 120, 60, 150, 70], 0.05, [("k", 0, 2)], 1),  # 70 arrives after close at 150
        ([120, 50], 0.01, [], 1),  # window [0,100) never opened but 120 >= 100 + 10: late
    ],
)
def test_allowed_lateness(
    stamps: list[int], lateness_s: float, emitted: list[Any], late: int
) -> None:
    res = window_job(lateness=lateness_s).process(
        1, keyed([{"k": "k"}] * len(stamps), ts=stamps), MemoryState()
    )
    assert emissions(res) == emitted
    assert res.late_dropped == late


def test_hopping_windows_count_a_record_in_every_window_containing_it() -> None:
    plan = window_job(hopping(milliseconds=100, hop_milliseconds=50))
    res = plan.process(
        1, keyed([{"k": "a"}, {"k": "a"}, {"k": "a"}], ts=[60, 120, 400]), MemoryState()
    )
    # windows: [0,100)={60}, [50,150)={60,120}, [100,200)={120}; 400 closes all of them
    assert emissions(res) == [("a", 0, 1), ("a", 50, 2), ("a", 100, 1)]


def test_event_time_from_a_timestamp_function_and_its_errors() -> None:
    plan = window_job(ts=lambda v: v["t"])
    recs = keyed([{"k": "a", "t": 5}, {"k": "a", "t": "soon"}, {"k": "a", "t": 250}], ts=[0, 0, 0])
    res = plan.process(1, recs, MemoryState())
    assert emissions(res) == [("a", 0, 1)]
    [dead] = res.dead_letters
    assert dead.stage == "window#2" and "epoch milliseconds" in dead.error


def test_default_event_time_is_the_source_record_timestamp_carried_across_repartition() -> None:
    plan = window_job()
    src = [InRecord("in", 0, i, None, b'{"k":"a"}', t) for i, t in enumerate([10, 30, 210])]
    out = run_pipeline(plan, {0: src})  # the driver gives repartition records timestamp 0
    assert [(v["window_start"], v["value"]) for v in out.sink_values()] == [(0, 2)]


def test_watermark_and_windows_survive_a_restart() -> None:
    state = MemoryState()
    r1 = window_job().process(1, keyed([{"k": "a"}], ts=[150]), state)
    state.apply(r1)
    fresh_plan = window_job()  # a new worker process: only the state carries over
    r2 = fresh_plan.process(1, keyed([{"k": "a"}, {"k": "a"}], ts=[20, 250]), state)
    assert r2.late_dropped == 1
    assert emissions(r2) == [("a", 100, 1)]


# ---------------------------------------------------------------------------------------
# Determinism: replay and batch boundaries
# ---------------------------------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(st.sampled_from("abcd"), st.integers(0, 1000), st.integers(-3, 3)), max_size=40
)


def mixed_plan() -> Plan:
    """A windowed aggregate with a tuple accumulator and a failing input (n == 0)."""
    job = (
        Job("d")
        .source("in", partitions=1, value="json")
        .key_by(lambda v: v["k"])
        .window(hopping(milliseconds=200, hop_milliseconds=100), allowed_lateness=0.1,
                timestamp=lambda v: v["t"])
        .aggregate((0, []), lambda acc, v: (acc[0] + 12 // v["n"], [*acc[1], v["n"]][-3:]))
        .to_kafka("out")
    )  # fmt: skip
    return compile_job(job)


def as_records(events: list[tuple[str, int, int]]) -> list[InRecord]:
    return [
        InRecord("in", 0, i, None, orjson.dumps({"k": k, "t": t, "n": n}), 0)
        for i, (k, t, n) in enumerate(events)
    ]


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, cut=st.integers(0, 40))
def test_replaying_a_batch_from_the_same_state_gives_the_identical_result(
    events: list[tuple[str, int, int]], cut: int
) -> None:
    plan = mixed_plan()
    warm = run_pipeline(plan, {0: as_records(events[:cut])})
    tail = as_records(events[cut:])
    first = run_pipeline(
        plan, {0: tail}, outcome=Outcome(states={k: v.copy() for k, v in warm.states.items()})
    )
    again = run_pipeline(
        mixed_plan(),
        {0: tail},
        outcome=Outcome(states={k: v.copy() for k, v in warm.states.items()}),
    )
    assert (first.sink, first.dead, first.late, first.state_data()) == (
        again.sink, again.dead, again.late, again.state_data()
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(events=EVENTS, batch=st.integers(1, 12))
def test_batch_boundaries_never_change_emissions_or_state(
    events: list[tuple[str, int, int]], batch: int
) -> None:
    whole = run_pipeline(mixed_plan(), {0: as_records(events)})
    split = run_pipeline(mixed_plan(), {0: as_records(events)}, batch_size=batch)
    assert split.sink == whole.sink
    assert [d.record.offset for d in split.dead] == [d.record.offset for d in whole.dead]
    assert (split.late, split.state_data()) == (whole.late, whole.state_data())
