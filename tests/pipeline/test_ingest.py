"""`open_source` (pipeline/ingest.py): a job whose source cannot be opened leaves nothing open."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.ingest import open_source
from pipeline.job import Job, RabbitStream, Source
from pipeline.kafka.clients import Source as KafkaSource


def test_a_rabbitmq_reader_that_cannot_be_made_closes_the_kafka_consumer_it_made() -> None:
    made: list[KafkaSource] = []

    def kafka_source(*args: Any, **kwargs: Any) -> KafkaSource:
        made.append(KafkaSource(*args, **kwargs))  # a real consumer (connects lazily)
        return made[-1]

    # A port out of range: StreamReader's URL parsing raises (the builder would have
    # refused this URL; a spec from elsewhere or a failing thread start raises the same way).
    bad = RabbitStream("s", "rabbitmq-stream://guest:guest@127.0.0.1:99999/")
    job = Job("j", operators=(Source("paxline.j.rabbitmq.s", 1, "bytes", bad),))
    with pytest.raises(ValueError, match="out of range"):
        open_source(job, "127.0.0.1:9", "paxline.j", "read_committed", kafka_source=kafka_source)
    assert len(made) == 1
    with pytest.raises(RuntimeError, match="closed"):
        made[0]._consumer.assignment()  # a closed librdkafka consumer refuses every call


def test_a_kafka_source_job_gets_the_consumer_itself() -> None:
    job = Job("k").source("t", partitions=1)
    src = open_source(job, "127.0.0.1:9", "paxline.k", "read_committed")
    try:
        assert isinstance(src, KafkaSource)
    finally:
        src.close()
