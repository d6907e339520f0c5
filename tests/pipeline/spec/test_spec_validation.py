"""Every malformed job is refused with a message that names the field or operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from pipeline.job import Job, KeyBy, SessionSpec, Window, hopping, session, sliding, tumbling
from pipeline.spec import SpecError, build_spec, validate


def src(name: str = "j", **kw: Any) -> Job:
    return Job(name, **kw).source("in", partitions=3, value="json")


def ident(x: Any) -> Any:
    return x


def add(acc: Any, x: Any) -> Any:
    return acc + x


BAD: list[tuple[str, Callable[[], Any], str]] = [
    ("empty job name", lambda: Job(""), "name must match"),
    ("bad job name", lambda: Job("word count"), "name must match"),
    ("bad guarantee", lambda: Job("j", guarantee="maybe"), "guarantee must be one of"),  # type: ignore[arg-type]
    ("no source", lambda: Job("j").map(ident).to_kafka("o"), "has no source; it starts with map()"),
    ("empty job", lambda: Job("j"), "has no source"),
    (
        "two sources",
        lambda: src().source("other", partitions=1).to_kafka("o"),
        "source#1: a job reads exactly one source",
    ),
    (
        "bad source topic chars",
        lambda: Job("j").source("in put", partitions=1).to_kafka("o"),
        "source#0: topic must be a Kafka topic name",
    ),
    (
        "source topic '.'",
        lambda: Job("j").source(".", partitions=1).to_kafka("o"),
        "not '.' or '..'",
    ),
    ("source topic '..'", lambda: Job("j").source("..", partitions=1).to_kafka("o"), "got '..'"),
    ("empty source topic", lambda: Job("j").source("", partitions=1).to_kafka("o"), "got ''"),
    (
        "long source topic",
        lambda: Job("j").source("t" * 250, partitions=1).to_kafka("o"),
        "1-249 chars",
    ),
    (
        "zero partitions",
        lambda: Job("j").source("in", partitions=0),
        "partitions must be an integer >= 1",
    ),
    (
        "bool partitions",
        lambda: Job("j").source("in", partitions=True),
        "partitions must be an integer",
    ),
    (
        "too many partitions",
        lambda: Job("j").source("in", partitions=10**6).to_kafka("o"),
        "partitions must be <= 100000",
    ),
    (
        "bad value format",
        lambda: Job("j").source("in", partitions=1, value="xml"),
        "source('in'): value must be",
    ),
    (
        "no sink",
        lambda: src().map(ident),
        "has no sink: end with .to_kafka(topic), .to_redis(view), .to_files(url) "
        "or .to_rabbitmq(queue, url=...)",
    ),
    (
        "two sinks",
        lambda: src().to_kafka("a").to_redis("v"),
        "two sinks (to_kafka#1 and to_redis#2)",
    ),
    (
        "operator after sink",
        lambda: src().key_by(ident).count().to_redis("v").map(ident).to_kafka("x"),
        "two sinks",
    ),
    (
        "operator after the only sink",
        lambda: src().to_kafka("o").map(ident),
        "map#2 comes after the sink to_kafka#1",
    ),
    (
        "bad sink topic",
        lambda: src().to_kafka("a/b"),
        "to_kafka#1: topic must be a Kafka topic name",
    ),
    ("sink is source", lambda: src().to_kafka("in"), "is also the source"),
    (
        "bad sink value",
        lambda: src().to_kafka("o", value="avro"),  # type: ignore[arg-type]
        "value must be 'json', 'str' or 'bytes'",
    ),
    (
        "bad view",
        lambda: src().key_by(ident).count().to_redis("my view"),
        "to_redis#3: view must match",
    ),
    ("bad dead-letter topic", lambda: src().to_kafka("o").dead_letter("x y"), "dead_letter: topic"),
    (
        "dead-letter is sink",
        lambda: src().to_kafka("o").dead_letter("o"),
        "is also the source or the sink",
    ),
    (
        "count without key_by",
        lambda: src().count().to_redis("v"),
        "count#1 needs a key_by() before it",
    ),
    (
        "reduce without key_by",
        lambda: src().map(ident).reduce(add).to_redis("v"),
        "reduce#2 needs a key_by() before it",
    ),
    (
        "window without key_by",
        lambda: src().window(tumbling(60)).count().to_kafka("o"),
        "window#1 needs a key_by() before it",
    ),
    (
        "two aggregations in one stage",
        lambda: src().key_by(ident).count().count().to_redis("v"),
        "count#3 follows count#2 without a key_by() in between",
    ),
    (
        "window without aggregation",
        lambda: src().key_by(ident).window(tumbling(1)).to_kafka("o"),
        "window#2 must be followed by count(), reduce() or aggregate(), not to_kafka()",
    ),
    (
        "window then map",
        lambda: src().key_by(ident).window(tumbling(1)).map(ident).count().to_kafka("o"),
        "not map()",
    ),
    ("zero window", lambda: tumbling(0), "tumbling window size must be > 0"),
    ("negative window", lambda: tumbling(-5), "must be > 0"),
    ("sub-millisecond window", lambda: tumbling(1.0005), "whole number of milliseconds"),
    ("nan window", lambda: tumbling(float("nan")), "finite number"),
    (
        "hop larger than size",
        lambda: hopping(10, hop=20),
        "hop (20000 ms) must not exceed its size",
    ),
    ("zero hop", lambda: hopping(10, hop=0), "hop must be > 0"),
    (
        "negative lateness",
        lambda: src().key_by(ident).window(tumbling(1), allowed_lateness=-1),
        "allowed_lateness must be >= 0",
    ),
    (
        "window not a window",
        lambda: src().key_by(ident).window(60),  # type: ignore[arg-type]
        "expected tumbling(...), hopping(...), sliding(...) or session(gap=...)",
    ),
    ("zero session gap", lambda: session(gap=0), "session window gap must be > 0"),
    ("negative sliding size", lambda: sliding(-1), "sliding window size must be > 0"),
    ("session gap not a number", lambda: session(gap="5"), "gap: seconds must be a finite"),  # type: ignore[arg-type]
    (
        "zero idle timeout",
        lambda: src().key_by(ident).window(session(gap=5), idle_timeout=0),
        "window(): idle_timeout must be > 0",
    ),
    (
        "hand-made window with a bad gap",
        lambda: validate(
            src()._then(KeyBy(ident))._then(Window(SessionSpec(-3))).count().to_redis("v")
        ),
        "window#2: gap must be a whole number of ms >= 1, got -3",
    ),
    (
        "session without an aggregation",
        lambda: validate(src().key_by(ident).window(session(gap=5)).to_redis("v")),
        "window#2 must be followed by count(), reduce() or aggregate(), not to_redis()",
    ),
    (
        "timestamp not callable",
        lambda: src().key_by(ident).window(tumbling(1), timestamp="ts"),  # type: ignore[arg-type]
        "timestamp must be callable",
    ),
    ("map not callable", lambda: src().map(3), "map(): fn must be callable, got int"),  # type: ignore[arg-type]
    ("key_by partitions", lambda: src().key_by(ident, partitions=0), "key_by(): partitions"),
    ("unknown setting", lambda: src().settings(batchsize=10), "unknown setting 'batchsize'"),
    (
        "bad batch_size",
        lambda: src().to_kafka("o").settings(batch_size=0),
        "settings.batch_size must be an integer >= 1",
    ),
    (
        "bad state backend",
        lambda: src().to_kafka("o").settings(state_backend="disk"),
        "settings.state_backend",
    ),
    (
        "bad consumer config",
        lambda: src().to_kafka("o").settings(consumer={"a": [1]}),
        "settings.consumer['a']",
    ),
    (
        "exactly-once on memory state",
        lambda: (
            src(guarantee="exactly-once")
            .key_by(ident)
            .count()
            .to_redis("v")
            .settings(state_backend="memory")
        ),
        "cannot give exactly-once",
    ),
    ("files: empty url", lambda: src().to_files(""), "to_files#1: url must be"),
    ("files: unknown scheme", lambda: src().to_files("ftp://h/d"), "unsupported URL scheme 'ftp'"),
    ("files: webhdfs without host", lambda: src().to_files("webhdfs:///d"), "names no namenode"),
    ("files: bad format", lambda: src().to_files("/d", format="csv"), "format must be 'parquet'"),
    ("files: bad roll", lambda: src().to_files("/d", roll="week"), "roll must be 'minute'"),
    ("files: bad size", lambda: src().to_files("/d", max_records=0), "max_records must be a posi"),
    (
        "files: two sinks",
        lambda: src().to_files("/d").to_kafka("o"),
        "two sinks (to_files#1 and to_kafka#2)",
    ),
    (
        "unserialisable initial",
        lambda: src().key_by(ident).aggregate(object(), add).to_redis("v"),
        "aggregate#2: initial value",
    ),
]


@pytest.mark.parametrize(("case", "build", "message"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_jobs_are_refused_with_a_message_naming_the_problem(
    case: str, build: Callable[[], Any], message: str
) -> None:
    with pytest.raises(SpecError) as err:
        job = build()
        validate(job)
        from pipeline.executor import compile_job

        compile_job(job)
    assert message in str(err.value), f"{case}: {err.value}"


@pytest.mark.parametrize(
    "entrypoint", ["", "   ", "examples/wordcount.py", "examples.wordcount:", "a b:job", ":job"]
)
def test_bad_entrypoints_are_refused(entrypoint: str) -> None:
    from examples import wordcount

    with pytest.raises(SpecError, match="entrypoint"):
        build_spec(wordcount.job, entrypoint)


def test_wordcount_spec_shape() -> None:
    from examples import wordcount

    spec = build_spec(wordcount.job, "examples/wordcount.py:job")
    assert spec["name"] == "wordcount"
    assert spec["entrypoint"] == "examples/wordcount.py:job"
    assert spec["sources"] == [
        {"topic": "text", "partitions": 4},
        {"topic": "paxline.wordcount.repartition.1", "partitions": 4},
    ]
    assert spec["sink"] == {
        "kind": "redis",
        "view": "wordcount",
        "dead_letter": "paxline.wordcount.dlq",
    }
    assert spec["guarantee"] == "at-least-once"
    settings = spec["settings"]
    assert settings["topic_stage"] == {"text": 0, "paxline.wordcount.repartition.1": 1}
    assert [s["output"]["kind"] for s in settings["stages"]] == ["repartition", "redis"]
    assert settings["stages"][0]["operators"] == ["flat_map#1", "filter#2", "map#3"]
    assert settings["dead_letter_topic"] == "paxline.wordcount.dlq"
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None


def test_spec_details_for_kafka_sinks_repartition_partitions_and_settings() -> None:
    job = (
        Job("j", guarantee="exactly-once")
        .source("in", partitions=3)
        .key_by(ident, partitions=12)
        .count()
        .to_kafka("out", value="str")
        .dead_letter("errors")
        .settings(batch_size=50, producer={"linger.ms": 5})
    )
    spec = build_spec(job, "jobs.mine:job")
    assert spec["sources"][1] == {"topic": "paxline.j.repartition.1", "partitions": 12}
    assert spec["sink"] == {
        "kind": "kafka",
        "topic": "out",
        "value": "str",
        "dead_letter": "errors",
    }
    assert spec["guarantee"] == "exactly-once"
    assert spec["settings"]["batch_size"] == 50
    assert spec["settings"]["producer"] == {"linger.ms": 5}
    assert spec["settings"]["stages"][1]["stateful"] is True
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None


def test_window_kinds_and_idle_timeout_are_in_the_stage_metadata() -> None:
    """The dashboard's job graph names each window (issue 18); workers read the timeout."""
    job = (
        src().key_by(ident)
        .window(session(gap=30), allowed_lateness=2, idle_timeout=1.5).count()
        .key_by(ident)
        .window(sliding(10)).count()
        .to_redis("v")
    )  # fmt: skip
    stages = build_spec(job, "jobs.mine:job")["settings"]["stages"]
    assert [(st["windows"], st["idle_timeout_ms"]) for st in stages] == [
        ({}, None),
        ({"window#2": "session(gap=30s, lateness=2s, idle=1.5s)"}, 1500),
        ({"window#5": "sliding(10s)"}, None),
    ]


def test_builders_return_new_jobs_and_never_mutate() -> None:
    base = src()
    a = base.map(ident)
    b = base.filter(ident)
    assert len(base.operators) == 1 and len(a.operators) == 2 and len(b.operators) == 2
    assert repr(a.to_kafka("o")) == "Job('j'.source.map.to_kafka)"


def test_file_sink_spec_names_url_format_and_roll_for_workers_and_the_dashboard() -> None:
    job = src().key_by(ident).count().to_files("webhdfs://nn:9870/out", format="jsonl", roll="day")
    spec = build_spec(job, "m:job")
    assert spec["sink"] == {"kind": "files", "url": "webhdfs://nn:9870/out", "format": "jsonl",
                            "roll": "day", "max_records": 100_000,
                            "dead_letter": "paxline.j.dlq"}  # fmt: skip
    last = spec["settings"]["stages"][-1]
    assert last["output"]["kind"] == "files" and last["output"]["operator"] == "to_files#3"
    validate_spec(msgspec.convert(spec, JobSpec))  # the coordinator accepts it
