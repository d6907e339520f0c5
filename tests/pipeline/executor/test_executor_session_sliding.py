"""Session and sliding windows and idle ticks (issue 18), against a plain-Python computation
of the documented semantics (the `expected` of examples/sessions.py and examples/sliding.py),
whatever the order of arrival and however the input is cut into batches."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from examples import sessions, sliding
from pipeline.executor import BatchResult, InRecord, Plan, compile_job
from pipeline.executor.ticks import PROBE, TICK_HEADER, IdleTimers
from pipeline.job import Job, session
from tests.pipeline.executor.memory_state import MemoryState


def keyed(values: list[dict[str, Any]], key: str, start: int = 0) -> list[InRecord]:
    """Stage-1 records as a key_by would have written them (msgpack [ts, value])."""
    return [
        InRecord("r", 0, start + i, v[key].encode(), msgspec.msgpack.encode([v["ts"], v]), 0)
        for i, v in enumerate(values)
    ]


def tick(offset: int, wm: int) -> InRecord:
    return InRecord("r", 0, offset, None, b"", 0, ((TICK_HEADER, str(wm).encode()),))


def run(plan: Plan, recs: list[InRecord], batch: int, state: MemoryState) -> list[Any]:
    out: list[Any] = []
    for lo in range(0, len(recs), batch):
        res = plan.process(1, recs[lo : lo + batch], state)
        assert not res.dead_letters, res.dead_letters
        state.apply(res)
        out += [orjson.loads(o.value) for o in res.outputs]
    return out


def canon(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(orjson.dumps(i, option=orjson.OPT_SORT_KEYS).decode() for i in items)


EVENTS = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 60_000)), max_size=50)


@settings(max_examples=80, deadline=None)
@given(events=EVENTS, batch=st.integers(1, 20))
def test_sessions_equal_the_plain_python_semantics(
    events: list[tuple[str, int]], batch: int
) -> None:
    views = [{"user": u, "ts": t} for u, t in events]
    recs = keyed(views, "user")
    recs.append(tick(len(recs), 2**50))  # an idle tick far ahead closes everything left
    got = run(compile_job(sessions.job), recs, batch, MemoryState())
    assert canon(got) == canon(sessions.expected(views))


@settings(max_examples=80, deadline=None)
@given(events=EVENTS, batch=st.integers(1, 20))
def test_sliding_windows_equal_the_plain_python_semantics(
    events: list[tuple[str, int]], batch: int
) -> None:
    payments = [{"card": c, "ts": t, "amount": i} for i, (c, t) in enumerate(events)]
    recs = keyed(payments, "card")
    recs.append(tick(len(recs), 2**50))
    state = MemoryState()
    got = run(compile_job(sliding.job), recs, batch, state)
    assert canon(got) == canon(sliding.expected(payments))
    if events:  # nothing left behind but the watermark
        assert state.data == {"s1:wm": msgspec.msgpack.encode(2**50)}


def test_a_session_stays_open_until_the_watermark_passes_its_end_then_leaves_no_state() -> None:
    plan = compile_job(sessions.job)
    state = MemoryState()
    views = [{"user": "u", "ts": t} for t in (0, 4_000, 9_000)]
    res = plan.process(1, keyed(views, "user"), state)
    assert res.outputs == []
    assert (res.watermark, res.next_close) == (9_000, 9_000 + 10_000 + 2_000)
    state.apply(res)
    # A tick short of end + lateness closes nothing; one at it emits the session once.
    res = plan.process(1, [tick(3, 20_999)], state)
    assert res.outputs == [] and res.watermark == 20_999
    state.apply(res)
    res = plan.process(1, [tick(4, 21_000), tick(5, 21_000)], state)
    assert [orjson.loads(o.value) for o in res.outputs] == [
        {"key": "u", "window_start": 0, "window_end": 19_000, "value": 3}
    ]
    assert res.next_close is None
    state.apply(res)
    assert list(state.data) == ["s1:wm"]


def test_a_bridging_record_merges_two_sessions_and_folds_in_event_time_order() -> None:
    job = (
        Job("m")
        .source("in", partitions=1, value="json")
        .key_by(lambda v: v["user"])
        .window(session(gap_milliseconds=12), allowed_lateness=1, timestamp=lambda v: v["ts"])
        .aggregate(list, lambda acc, v: [*acc, v["ts"]])
        .to_kafka("out")
    )
    views = [{"user": "u", "ts": t} for t in (0, 5, 25, 30, 15)]  # 15 bridges [0,5] and [25,30]
    recs = [*keyed(views, "user"), tick(5, 10_000)]
    assert run(compile_job(job), recs, 2, MemoryState()) == [
        {"key": "u", "window_start": 0, "window_end": 42, "value": [0, 5, 15, 25, 30]}
    ]


def test_a_tick_before_any_record_or_behind_the_watermark_changes_nothing() -> None:
    plan = compile_job(sessions.job)
    state = MemoryState()
    res = plan.process(1, [tick(0, 5_000)], state)
    assert (res.outputs, res.state_writes, res.dead_letters) == ([], {}, [])
    state.apply(plan.process(1, keyed([{"user": "u", "ts": 7_000}], "user", 1), state))
    res = plan.process(1, [tick(2, PROBE), tick(3, 6_000)], state)
    assert (res.outputs, res.state_writes) == ([], {})
    assert (res.watermark, res.next_close) == (7_000, 19_000)


def test_a_failing_emission_on_a_tick_is_a_dead_letter_naming_the_operator() -> None:
    job = (
        Job("f")
        .source("in", partitions=1, value="json")
        .key_by(lambda v: v["user"])
        .window(session(gap_milliseconds=10), timestamp=lambda v: v["ts"])
        .count()
        .map(lambda w: 1 // 0)
        .to_kafka("out")
    )
    plan = compile_job(job)
    state = MemoryState()
    state.apply(plan.process(1, keyed([{"user": "u", "ts": 0}], "user"), state))
    before = dict(state.data)
    res = plan.process(1, [tick(1, 100)], state)
    [dead] = res.dead_letters
    assert dead.record.offset == 1 and "ZeroDivisionError" in dead.error
    assert dead.stage == "map#4"
    state.apply(res)
    assert state.data == before  # rolled back: the session is still open


# ---------------------------------------------------------------------------------------
# IdleTimers: when the worker sends a tick
# ---------------------------------------------------------------------------------------

KEY = ("j", "paxline.j.repartition.1", 0)


def data(n: int = 1) -> list[InRecord]:
    return [InRecord(KEY[1], 0, i, b"k", b"v", 0) for i in range(n)]


def test_idle_timer_ticks_once_the_wall_clock_watermark_reaches_the_next_closing() -> None:
    timers = IdleTimers()
    assert timers.due(0.0, [(KEY, 1000)]) == []
    timers.observe(KEY, data(), BatchResult(watermark=50_000, next_close=53_000), 0.0)
    assert timers.due(0.9, [(KEY, 1000)]) == []  # not idle for the timeout yet
    assert timers.due(2.9, [(KEY, 1000)]) == []  # idle, but 52_900 closes nothing
    [t] = timers.due(3.0, [(KEY, 1000)])
    assert (t.topic, t.partition, t.watermark) == (KEY[1], 0, 53_000)
    assert t.headers == [(TICK_HEADER, b"53000")]
    assert timers.due(3.5, [(KEY, 1000)]) == []  # in flight: not again within the timeout
    # The tick came back; the watermark base stays the last record's.
    timers.observe(KEY, [tick(1, 53_000)], BatchResult(watermark=53_000, next_close=60_000), 3.6)
    assert timers.due(9.9, [(KEY, 1000)]) == []
    [t] = timers.due(10.0, [(KEY, 1000)])
    assert t.watermark == 60_000
    # Data resets the idle clock.
    timers.observe(KEY, data(), BatchResult(watermark=61_000, next_close=70_000), 10.5)
    assert timers.due(11.0, [(KEY, 1000)]) == []


def test_idle_timer_probes_a_partition_taken_over_while_quiet_and_forgets_released_ones() -> None:
    timers = IdleTimers()
    assert timers.due(0.0, [(KEY, 500)]) == []
    [probe] = timers.due(0.5, [(KEY, 500)])
    assert probe.watermark == PROBE
    timers.observe(KEY, [tick(0, PROBE)], BatchResult(watermark=1_000, next_close=1_200), 0.6)
    assert timers.due(1.0, [(KEY, 500)]) == []  # quiet time counts from the probe
    assert [t.watermark for t in timers.due(1.1, [(KEY, 500)])] == [1_500]
    assert timers.due(5.0, [(KEY, None)]) == []  # no idle timeout: never
    assert timers.due(5.0, []) == []  # released: forgotten
    assert timers.due(5.6, [(KEY, 500)]) == []  # taken again: the clock starts afresh


def test_ticks_close_tumbling_and_hopping_windows_too() -> None:
    from pipeline.job import hopping, tumbling

    for spec, want in (
        (tumbling(milliseconds=100), [0]),
        (hopping(milliseconds=100, hop_milliseconds=50), [-50, 0]),
    ):
        job = (
            Job("t")
            .source("in", partitions=1, value="json")
            .key_by(lambda v: v["user"])
            .window(spec, timestamp=lambda v: v["ts"], idle_timeout=1)
            .count()
            .to_kafka("out")
        )
        plan = compile_job(job)
        state = MemoryState()
        res = plan.process(1, keyed([{"user": "u", "ts": 20}], "user"), state)
        assert res.outputs == [] and res.next_close == (want[0] + 100)
        state.apply(res)
        res = plan.process(1, [tick(1, 150)], state)
        starts = [orjson.loads(o.value)["window_start"] for o in res.outputs]
        assert starts == want
