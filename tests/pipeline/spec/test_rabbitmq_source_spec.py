"""A RabbitMQ stream source (issue 19) is checked when the job is built and shows up in the
spec the coordinators store: the stream and server (never the password) for the dashboard
graph and `paxline jobs`, and the Kafka anchor topic its offsets are kept under."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from paxline.cli.jobs import _rabbitmq_source, _submit_summary, topics_of
from pipeline.job import Job
from pipeline.spec import SpecError, build_spec

URL = "rabbitmq-stream://user:s3cret@rabbit.example:5552/%2F"


def stream_job(**kw: Any) -> Job:
    return (
        Job("rj", guarantee="exactly-once")
        .source_rabbitmq_stream("orders", url=URL, **kw)
        .map(str.upper)
        .to_kafka("out")
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Job("j").source_rabbitmq_stream("bad name", url=URL), "stream must match"),
        (lambda: Job("j").source_rabbitmq_stream("s", url="amqp://h:5672/"),
         "must start with rabbitmq-stream://"),
        (lambda: Job("j").source_rabbitmq_stream("s", url="rabbitmq-stream:///"),
         "must name a host"),
        (lambda: Job("j").source_rabbitmq_stream("s", url="rabbitmq-stream://h:99999/"),
         "bad port"),
        (lambda: Job("j").source_rabbitmq_stream("s", url=URL, partitions=0),
         "partitions must be an integer >= 1"),
        (lambda: Job("j").source_rabbitmq_stream("s", url=URL, value="yaml"), "source_rabbitmq"),
        (lambda: Job("j").source_rabbitmq_stream("s" * 250, url=URL), "stream must match"),
    ],
)  # fmt: skip
def test_a_bad_stream_source_is_refused_naming_what_is_wrong(build: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build()


def test_the_spec_names_the_stream_and_server_but_not_the_password() -> None:
    spec = build_spec(stream_job(partitions=3), "jobs.py:job")
    assert spec["sources"][0] == {"topic": "paxline.rj.rabbitmq.orders", "partitions": 3}
    assert spec["settings"]["stages"][0]["source"] == {
        "kind": "rabbitmq-stream", "stream": "orders", "server": "rabbit.example:5552",
    }  # fmt: skip
    assert "s3cret" not in repr(spec)
    # the coordinators accept it as any other job spec
    assert validate_spec(msgspec.convert(spec, JobSpec)) is None


def test_submit_creates_the_anchor_topic_and_says_what_the_job_reads() -> None:
    spec = build_spec(stream_job(), "jobs.py:job")
    assert topics_of(spec)["paxline.rj.rabbitmq.orders"] == 1
    assert _rabbitmq_source(spec["settings"]) == "rabbitmq stream orders on rabbit.example:5552"
    line = _submit_summary(spec, ["paxline.rj.rabbitmq.orders"])
    assert line.startswith("submitted rj: reads rabbitmq stream orders on rabbit.example:5552")


def test_a_super_stream_partition_reads_its_partition_stream() -> None:
    single = stream_job().operators[0]
    many = stream_job(partitions=3).operators[0]
    assert single.rabbitmq is not None and many.rabbitmq is not None
    assert single.rabbitmq.stream_of(0, 1) == "orders"
    assert [many.rabbitmq.stream_of(p, 3) for p in range(3)] == ["orders-0", "orders-1", "orders-2"]
