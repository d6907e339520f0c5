"""A transactional producer fenced by the next owner of its partition (a normal handover) is
dropped quietly (issue 13): every call the worker still makes on it, `close` included, says
"fenced" through `ProducerFenced` or returns, and never raises librdkafka's own exception,
which the worker would not catch. Against the real broker."""

from __future__ import annotations

import uuid

import pytest

from pipeline.executor.records import OutRecord
from pipeline.kafka import create_topics
from pipeline.kafka.clients import ProducerFenced, Source, TransactionalSink, TransactionFailed

pytestmark = pytest.mark.integration


def test_a_fenced_producer_fails_with_producer_fenced_and_closes_quietly(
    kafka_bootstrap: str,
) -> None:
    topic = f"fenced-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 1})
    source = Source(kafka_bootstrap, group_id=f"paxline.{topic}", isolation="read_committed")
    txn_id = f"paxline.fenced.{topic}.0"
    old = TransactionalSink(kafka_bootstrap, txn_id)
    old.init(30)
    old.begin([OutRecord(topic, b"k", b"v-old")], [])
    new = TransactionalSink(kafka_bootstrap, txn_id)
    new.init(30)  # the next owner takes the partition over: the old producer is fenced
    with pytest.raises((ProducerFenced, TransactionFailed)):
        old.commit((topic, 0, 1), source.group_metadata(), timeout=30)
    old.close()  # must not raise: the worker calls it while dropping the partition
    with pytest.raises((ProducerFenced, TransactionFailed)):
        old.begin([OutRecord(topic, b"k", b"v-again")], [])
    old.close()
    new.begin([OutRecord(topic, b"k", b"v-new")], [])
    new.commit((topic, 0, 1), source.group_metadata(), timeout=30)
    new.close()
    source.close()
