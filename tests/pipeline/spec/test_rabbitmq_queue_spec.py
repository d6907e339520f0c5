"""A RabbitMQ sink (`to_rabbitmq`) and a RabbitMQ queue source (`source_rabbitmq_queue`), issue
19: checked when the job is built (and again for operators built by hand), refused under
exactly-once with a message saying why and what to use, and shown in the spec the coordinators
store (queue and server, never the password) for the dashboard graph and `paxline jobs`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import orjson
import pytest

from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from paxline.cli.jobs import _rabbitmq_source, topics_of
from pipeline.executor import compile_job
from pipeline.executor.provenance import ORIGIN_HEADER, SRC_HEADER
from pipeline.executor.records import RABBITMQ_TOPIC
from pipeline.job import Job, RabbitQueue, Source, ToRabbitMQ
from pipeline.spec import SpecError, build_spec, validate
from tests.pipeline.executor.memory_state import records, run_pipeline

AMQP = "amqp://user:s3cret@rabbit.example/%2F"


def sink_job(guarantee: Any = "at-least-once", **kw: Any) -> Job:
    return (
        Job("rs", guarantee=guarantee)
        .source("in", partitions=2, value="str")
        .key_by(lambda w: w)
        .count()
        .to_rabbitmq("counts", url=AMQP, **kw)
    )


def queue_job(guarantee: Any = "at-least-once", **kw: Any) -> Job:
    return (
        Job("rq", guarantee=guarantee)
        .source_rabbitmq_queue("orders", url=AMQP, value="str", **kw)
        .key_by(lambda v: v.split(":")[0])
        .count()
        .to_redis("per_key")
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("", url=AMQP),
         r"to_rabbitmq\(''\): queue must match"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("a b", url=AMQP),
         "queue must match"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("amq.x", url=AMQP),
         "reserved by RabbitMQ"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("q", url="http://h/"),
         "url must start with amqp:// or amqps://"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("q", url="amqp:///"),
         "url must name a host"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("q", url="amqp://h:0x/"),
         "bad port"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("q", url=AMQP, value="xml"),  # type: ignore[arg-type]
         "value must be 'json', 'str' or 'bytes'"),
        (lambda: Job("j").source("in", partitions=1).to_rabbitmq("q", url=AMQP, declare="lazy"),  # type: ignore[arg-type]
         "declare must be 'classic', 'quorum' or None"),
        (lambda: Job("j").source_rabbitmq_queue("", url=AMQP), "queue must match"),
        (lambda: Job("j").source_rabbitmq_queue("q", url="rabbitmq-stream://h:5552/"),
         "url must start with amqp://"),
        (lambda: Job("j").source_rabbitmq_queue("q", url=AMQP, partitions=0),
         "partitions must be an integer >= 1"),
        (lambda: Job("j").source_rabbitmq_queue("q", url=AMQP, prefetch=0),
         "prefetch must be an integer >= 1"),
        (lambda: Job("j").source_rabbitmq_queue("q", url=AMQP, value="yaml"),
         "source_rabbitmq_queue"),
    ],
)  # fmt: skip
def test_a_bad_rabbitmq_sink_or_queue_source_is_refused_naming_what_is_wrong(
    build: Any, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        build()


def test_an_exactly_once_job_with_a_rabbitmq_sink_is_refused_saying_why() -> None:
    with pytest.raises(SpecError) as err:
        validate(sink_job("exactly-once"))
    text = str(err.value)
    assert text.startswith("to_rabbitmq#3: a RabbitMQ sink is at-least-once")
    assert "guarantee='at-least-once'" in text


def test_an_exactly_once_job_reading_a_queue_is_refused_pointing_at_streams() -> None:
    with pytest.raises(SpecError) as err:
        validate(queue_job("exactly-once"))
    assert "a RabbitMQ queue source is at-least-once only" in str(err.value)
    assert "source_rabbitmq_stream()" in str(err.value)


def test_operators_built_by_hand_are_checked_again() -> None:
    job = sink_job()
    bad = replace(job, operators=(*job.operators[:-1], ToRabbitMQ("q", "ftp://h/")))
    with pytest.raises(SpecError, match="to_rabbitmq#3: url must start with amqp://"):
        validate(bad)
    src = queue_job()
    anchor = "paxline.rq.rabbitmq-queue.orders"
    hand = Source(anchor, 1, "str", RabbitQueue("orders", AMQP, prefetch=-1))
    with pytest.raises(SpecError, match="source#0: prefetch must be an integer >= 1"):
        validate(replace(src, operators=(hand, *src.operators[1:])))


def test_the_spec_names_queue_and_server_but_not_the_password() -> None:
    spec = build_spec(sink_job(), "jobs.py:job")
    assert spec["sink"] == {"kind": "rabbitmq", "queue": "counts", "server": "rabbit.example:5672",
                            "value": "json", "dead_letter": "paxline.rs.dlq"}  # fmt: skip
    assert spec["settings"]["stages"][-1]["output"]["kind"] == "rabbitmq"
    assert "s3cret" not in repr(spec)
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None

    spec = build_spec(queue_job(partitions=2), "jobs.py:job")
    anchor = "paxline.rq.rabbitmq-queue.orders"
    assert spec["sources"][0] == {"topic": anchor, "partitions": 2}
    assert spec["settings"]["stages"][0]["source"] == {
        "kind": "rabbitmq-queue", "queue": "orders", "server": "rabbit.example:5672",
    }  # fmt: skip
    assert "s3cret" not in repr(spec)
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None
    assert topics_of(spec)[anchor] == 2
    assert _rabbitmq_source(spec["settings"]) == "rabbitmq queue orders on rabbit.example:5672"


def test_amqps_defaults_to_port_5671() -> None:
    job = Job("t").source("in", partitions=1).to_rabbitmq("q", url="amqps://h/")
    assert build_spec(job, "j.py:job")["sink"]["server"] == "h:5671"


def test_a_queue_source_with_partitions_reads_one_queue_per_partition() -> None:
    one, many = queue_job().operators[0], queue_job(partitions=3).operators[0]
    assert isinstance(one, Source) and isinstance(one.rabbitmq, RabbitQueue)
    assert isinstance(many, Source) and isinstance(many.rabbitmq, RabbitQueue)
    assert one.rabbitmq.queue_of(0, 1) == "orders"
    assert [many.rabbitmq.queue_of(p, 3) for p in range(3)] == ["orders-0", "orders-1", "orders-2"]


def test_rabbitmq_outputs_leave_the_executor_encoded_under_the_marker_topic() -> None:
    plan = compile_job(sink_job())
    assert plan.stages[-1].output == "rabbitmq" and plan.stages[-1].output_topic is None
    words = ["a", "b", "a", "c", "a", "b"]
    out = run_pipeline(plan, {0: records("in", [w.encode() for w in words])})
    assert {r.topic for r in out.sink} == {RABBITMQ_TOPIC}
    final: dict[str, Any] = {}
    for r in out.sink:
        assert r.key is not None
        final[r.key.decode()] = orjson.loads(r.value or b"")
    assert final == {"a": 3, "b": 2, "c": 1}


def test_records_of_a_queue_carry_their_origin_but_no_position_to_deduplicate_by() -> None:
    """Virtual offsets restart at the resume offset on each subscription, so a position could
    name another message after a redelivery: downstream must never drop such a record."""
    plan = compile_job(queue_job())
    anchor = plan.stages[0].topics[0]
    res = plan.process(0, records(anchor, [b"k1:1", b"k2:2"]), {})  # type: ignore[arg-type]
    assert len(res.outputs) == 2
    for i, r in enumerate(res.outputs):
        names = dict(r.headers)
        assert SRC_HEADER not in names
        assert names[ORIGIN_HEADER] == f"{anchor}:0:{i}".encode()
    # a Kafka source's stage keeps its position (de-duplication downstream)
    kafka = compile_job(sink_job())
    res = kafka.process(0, records("in", [b"a"]), {})  # type: ignore[arg-type]
    assert SRC_HEADER in dict(res.outputs[0].headers)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://user:s3cret@rabbit.example/", "must start with amqp:// or amqps://"),
        ("amqp://user:s3cret@rabbit.example:99999/", "has a bad port"),
        ("amqp://user:s3cret@:5672/", "must name a host"),
        ("rabbitmq-stream://user:s3cret@rabbit.example:x/", "has a bad port"),
    ],
)
def test_a_bad_url_is_named_without_its_password(url: str, problem: str) -> None:
    """The error names the URL (a submit error lands in terminals and CI logs) with the
    password masked; user and host stay, so the user sees which URL is meant."""
    from pipeline.job import amqp_url_problem, stream_url_problem

    check = stream_url_problem if url.startswith("rabbitmq-stream") else amqp_url_problem
    message = check(url)
    assert message is not None and problem in message
    assert "s3cret" not in message
    assert "user:***@" in message
