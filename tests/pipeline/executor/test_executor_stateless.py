"""Stateless stages: decoding, operators, dead letters and the encoding of what leaves them."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from pipeline.executor import InRecord, OutRecord, PlanError, compile_job
from pipeline.job import Job
from tests.pipeline.executor.clicks import Click, ClickModel, ClickStruct
from tests.pipeline.executor.memory_state import MemoryState, json_records, records


def run0(job: Job, recs: list[InRecord]) -> Any:
    return compile_job(job).process(0, recs, MemoryState())


def passthrough(value: Any, sink_value: str = "json") -> Job:
    return Job("t").source("in", partitions=1, value=value).to_kafka("out", value=sink_value)  # type: ignore[arg-type]


RAW = b'{"user":"ann","ts":5}'


@pytest.mark.parametrize(
    ("value", "raw", "decoded"),
    [
        ("bytes", b"\x00\xff", b"\x00\xff"),
        ("str", "h\u00e9".encode(), "h\u00e9"),
        ("json", RAW, {"user": "ann", "ts": 5}),
        (Click, RAW, Click("ann", 5)),
        (ClickStruct, RAW, ClickStruct("ann", 5)),
        (ClickModel, RAW, ClickModel(user="ann", ts=5)),
    ],
    ids=["bytes", "str", "json", "dataclass", "msgspec", "pydantic"],
)
def test_source_value_formats_decode(value: Any, raw: bytes, decoded: Any) -> None:
    seen: list[Any] = []
    job = Job("t").source("in", partitions=1, value=value).map(seen.append).to_kafka("out")
    res = run0(job, records("in", [raw]))
    assert res.dead_letters == []
    assert seen == [decoded]


@pytest.mark.parametrize(
    ("value", "raw", "error"),
    [
        ("str", b"\xff", "UnicodeDecodeError"),
        ("json", b"{not json", "JSONDecodeError"),
        ("json", None, "(record has no value)"),
        (Click, b'{"user": 1}', "ValidationError"),
        (ClickModel, b'{"user": "x"}', "ValidationError"),
    ],
)
def test_undecodable_records_become_dead_letters_and_the_rest_continue(
    value: Any, raw: bytes | None, error: str
) -> None:
    good = b'{"user":"ok","ts":1}' if value != "str" else b"ok"
    recs = records("in", [good, raw, good])
    res = run0(passthrough(value, "str"), recs)
    assert len(res.outputs) == 2
    [dead] = res.dead_letters
    assert dead.record == recs[1]
    assert dead.stage == "source#0"
    assert error in dead.error


def boom(x: Any) -> Any:
    if x == 2:
        raise ValueError("two is not allowed")
    return x


@pytest.mark.parametrize(
    ("build", "stage", "outputs"),
    [
        (lambda j: j.map(boom), "map#1", [1, 3]),
        (lambda j: j.filter(boom), "filter#1", [1, 3]),
        (lambda j: j.flat_map(lambda x: [boom(x)]), "flat_map#1", [1, 3]),
        (lambda j: j.map(lambda x: x).filter(lambda x: boom(x) is not None), "filter#2", [1, 3]),
    ],
    ids=["map", "filter", "flat_map", "second-operator"],
)
def test_user_exceptions_dead_letter_only_their_record(
    build: Any, stage: str, outputs: list[int]
) -> None:
    job = build(Job("t").source("in", partitions=1, value="json")).to_kafka("out")
    recs = json_records("in", [1, 2, 3])
    res = run0(job, recs)
    assert [orjson.loads(o.value) for o in res.outputs] == outputs
    [dead] = res.dead_letters
    assert (dead.record, dead.stage) == (recs[1], stage)
    assert dead.error == "ValueError: two is not allowed"


def test_a_failing_flat_map_sibling_drops_everything_from_its_record() -> None:
    job = (
        Job("t")
        .source("in", partitions=1, value="json")
        .flat_map(lambda xs: xs)
        .map(lambda x: 10 // x)
        .to_kafka("out")
    )
    recs = json_records("in", [[1, 2], [5, 0, 10], [1]])
    res = run0(job, recs)
    assert [orjson.loads(o.value) for o in res.outputs] == [10, 5, 10]
    assert [d.record.offset for d in res.dead_letters] == [1]
    assert res.dead_letters[0].error.startswith("ZeroDivisionError")


def test_user_functions_run_once_per_element_even_when_one_fails() -> None:
    calls: list[int] = []

    def counted(x: int) -> Any:
        calls.append(x)
        return boom(x)

    job = Job("t").source("in", partitions=1, value="json").map(counted).to_kafka("out")
    run0(job, json_records("in", [1, 2, 3, 2, 4]))
    assert calls == [1, 2, 3, 2, 4]


def test_kafka_sink_keeps_the_source_key_and_encodes_values() -> None:
    recs = [InRecord("in", 0, 0, b"k", b"7", 1), InRecord("in", 0, 1, None, b"8", 2)]
    for sink_value, want in [("json", b'"7"'), ("str", b"7"), ("bytes", b"7")]:
        res = run0(passthrough("str" if sink_value != "bytes" else "bytes", sink_value), recs)
        assert res.outputs[0] == OutRecord("out", b"k", want)
        assert res.outputs[1].key is None


@pytest.mark.parametrize(
    ("sink_value", "fn", "error"),
    [
        ("bytes", lambda v: 3, "to_kafka(value='bytes') needs bytes, got int"),
        ("json", lambda v: object(), "TypeError"),
    ],
)
def test_unencodable_sink_values_are_dead_letters(sink_value: Any, fn: Any, error: str) -> None:
    job = Job("t").source("in", partitions=1).map(fn).to_kafka("out", value=sink_value)
    res = run0(job, records("in", [b"x"]))
    assert res.outputs == []
    [dead] = res.dead_letters
    assert dead.stage == "to_kafka#2" and error in dead.error


def test_key_by_writes_new_key_and_msgpack_ts_value_to_the_repartition_topic() -> None:
    job = (
        Job("j")
        .source("in", partitions=2, value="json")
        .key_by(lambda v: v["k"])
        .count()
        .to_redis("v")
    )
    plan = compile_job(job)
    res = plan.process(
        0, json_records("in", [{"k": "a"}, {"k": 7}, {"k": [1, "x"]}]), MemoryState()
    )
    assert [o.topic for o in res.outputs] == ["paxline.j.repartition.1"] * 3
    assert [o.key for o in res.outputs] == [b"a", b"7", b'[1,"x"]']
    assert msgspec.msgpack.decode(res.outputs[0].value) == [1000, {"k": "a"}]


@pytest.mark.parametrize(
    ("key_fn", "value_fn", "error"),
    [
        (lambda v: None, lambda v: v, "key_by returned None"),
        (lambda v: "k", lambda v: object(), "cannot be serialised"),
        (lambda v: v["missing"], lambda v: v, "KeyError"),
    ],
    ids=["none-key", "unserialisable-value", "raising-key"],
)
def test_key_by_failures_are_dead_letters(key_fn: Any, value_fn: Any, error: str) -> None:
    job = (
        Job("j").source("in", partitions=1, value="json").map(value_fn).key_by(key_fn).count()
    ).to_redis("v")
    res = compile_job(job).process(0, json_records("in", [{"a": 1}]), MemoryState())
    assert res.outputs == []
    [dead] = res.dead_letters
    assert dead.stage == "key_by#2" and error in dead.error


def test_typed_values_survive_the_repartition_hop() -> None:
    seen: list[Any] = []

    def remember(acc: int, c: Any) -> int:
        seen.append(c)
        return acc

    job = (
        Job("j")
        .source("in", partitions=1, value=ClickStruct)
        .key_by(lambda c: c.user)
        .reduce(remember, initial=0)
        .to_redis("v")
    )
    plan = compile_job(job)
    out = plan.process(0, records("in", [RAW]), MemoryState()).outputs
    rec = InRecord(out[0].topic, 0, 0, out[0].key, out[0].value, 0)
    plan.process(1, [rec], MemoryState())
    assert seen == [ClickStruct("ann", 5)]


def test_stateless_redis_view_keeps_the_latest_value_per_kafka_key() -> None:
    job = Job("t").source("in", partitions=1, value="json").to_redis("latest")
    pairs = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (None, b"4"), (b"b", b"null")]
    recs = [InRecord("in", 0, i, k, v, 0) for i, (k, v) in enumerate(pairs)]
    res = run0(job, recs)
    assert res.view_writes == {"a": b"3", "b": None}
    assert [d.record.offset for d in res.dead_letters] == [3]


def test_plan_routes_topics_to_stages_and_rejects_unknown_ones() -> None:
    from examples import wordcount

    plan = compile_job(wordcount.job)
    assert plan.stage_for_topic("text") == 0
    assert plan.stage_for_topic("paxline.wordcount.repartition.1") == 1
    assert [s.stateful for s in plan.stages] == [False, True]
    assert [s.output for s in plan.stages] == ["repartition", "redis"]
    with pytest.raises(PlanError, match="does not read 'nope'"):
        plan.stage_for_topic("nope")
    with pytest.raises(PlanError, match=r"stages 0\.\.1"):
        plan.process(2, [], MemoryState())


def test_empty_batch_is_a_no_op() -> None:
    from examples import clicks, wordcount

    for job in (wordcount.job, clicks.job):
        plan = compile_job(job)
        for stage in plan.stages:
            res = plan.process(stage.index, [], MemoryState())
            assert (res.outputs, res.dead_letters, res.state_writes, res.view_writes) == (
                [],
                [],
                {},
                {},
            )
