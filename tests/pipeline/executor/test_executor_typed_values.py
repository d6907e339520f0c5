"""Typed record values: a job declares the class its records decode into (dataclass,
msgspec.Struct, pydantic model, or — for users coming from Faust — a faust.Record), gets
instances of it in its operators, gets them back after a repartition hop when `key_by` names
the `value_type`, and writes them to a JSON sink as plain objects."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.executor import compile_job
from pipeline.job import Job
from tests.pipeline.executor.clicks import Click, ClickModel, ClickRecord, ClickStruct
from tests.pipeline.executor.memory_state import MemoryState, records, run_pipeline

CLASSES = [Click, ClickStruct, ClickModel, ClickRecord]
IDS = ["dataclass", "msgspec", "pydantic", "faust"]
RAW = [b'{"user":"ann","ts":1}', b'{"user":"bob","ts":2}', b'{"user":"ann","ts":3}']


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_values_keep_their_class_across_a_repartition_hop(cls: type) -> None:
    seen: list[Any] = []

    def after_hop(click: Any) -> Any:
        seen.append(click)
        return click

    job = (
        Job("typed")
        .source("clicks", partitions=1, value=cls)
        .key_by(lambda c: c.user, value_type=cls)
        .map(after_hop)
        .to_kafka("out")
    )
    out = run_pipeline(compile_job(job), {0: records("clicks", RAW)})
    assert out.dead == []
    assert all(type(c) is cls for c in seen), [type(c) for c in seen]
    assert sorted((c.user, c.ts) for c in seen) == [("ann", 1), ("ann", 3), ("bob", 2)]
    # The JSON sink writes the fields; a faust record also carries faust's own type tag so a
    # faust app reading the topic gets its Record class back.
    written = sorted((v["user"], v["ts"]) for v in out.sink_values())
    assert written == [("ann", 1), ("ann", 3), ("bob", 2)]


def test_a_faust_app_reads_what_a_faust_record_sink_writes() -> None:
    job = Job("f").source("clicks", partitions=1, value=ClickRecord).to_kafka("out")
    res = compile_job(job).process(0, records("clicks", RAW[:1]), MemoryState())
    [out] = res.outputs
    assert ClickRecord.loads(out.value, serializer="json") == ClickRecord(user="ann", ts=1)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"user":"x"}', "missing 1 required positional argument: 'ts'"),
        (b"[1, 2]", "must be a mapping"),
        (b"{not json", "JSONDecodeError"),
    ],
    ids=["missing-field", "not-an-object", "not-json"],
)
def test_records_a_faust_record_cannot_hold_become_dead_letters(raw: bytes, error: str) -> None:
    job = Job("f").source("clicks", partitions=1, value=ClickRecord).to_kafka("out")
    recs = records("clicks", [RAW[0], raw, RAW[1]])
    res = compile_job(job).process(0, recs, MemoryState())
    assert len(res.outputs) == 2
    [dead] = res.dead_letters
    assert dead.record == recs[1] and dead.stage == "source#0"
    assert error in dead.error
