"""A dead letter names the user's source record and carries a readable value, whichever
stage failed (issue 14, item 8: a second stage's dead letters pointed at the repartition
topic and carried its internal MessagePack value)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.executor import compile_job
from pipeline.executor.deadletter import dead_letter_record
from pipeline.job import Job
from tests.pipeline.executor.memory_state import json_records, run_pipeline


def _explode(v: dict[str, Any]) -> dict[str, Any]:
    if v["n"] == 3:
        raise ValueError("n must not be 3")
    return v


def _headers(rec: Any) -> dict[str, bytes]:
    return dict(rec.headers)


def test_a_dead_letter_of_a_third_stage_names_the_source_record_and_is_json() -> None:
    job = (
        Job("dl3")
        .source("clicks", partitions=1, value="json")
        .key_by(lambda v: v["user"])  # stage 1 reads paxline.dl3.repartition.1
        .map(lambda v: {**v, "seen": True})
        .key_by(lambda v: str(v["n"]))  # stage 2 reads paxline.dl3.repartition.2
        .map(_explode)
        .to_kafka("out")
    )
    values = [{"user": f"u{i % 2}", "n": i} for i in range(6)]
    out = run_pipeline(compile_job(job), {0: json_records("clicks", values)})
    assert len(out.sink) == 5
    [dl] = out.dead
    rec = dead_letter_record("paxline.dl3.dlq", dl)
    h = _headers(rec)
    assert (h["paxline.source.topic"], h["paxline.source.partition"]) == (b"clicks", b"0")
    assert h["paxline.source.offset"] == b"3"
    assert h["paxline.record.topic"] == b"paxline.dl3.repartition.2"
    assert h["paxline.stage"] == b"map#4"
    assert b"n must not be 3" in h["paxline.error"]
    assert orjson.loads(rec.value) == {"user": "u1", "n": 3, "seen": True}
    assert rec.key == b"3"


def test_a_dead_letter_of_the_first_stage_keeps_the_source_bytes() -> None:
    job = Job("dl1").source("clicks", partitions=1, value="json").map(_explode).to_kafka("out")
    out = run_pipeline(compile_job(job), {0: json_records("clicks", [{"n": 3}])})
    [dl] = out.dead
    rec = dead_letter_record("paxline.dl1.dlq", dl)
    h = _headers(rec)
    assert (h["paxline.source.topic"], h["paxline.source.offset"]) == (b"clicks", b"0")
    assert "paxline.record.topic" not in h
    assert rec.value == orjson.dumps({"n": 3})
