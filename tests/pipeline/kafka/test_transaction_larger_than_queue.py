"""A transaction may carry more outputs than the producer's local queue holds: `begin` waits
for room (the records already queued are sent inside the transaction) instead of aborting.
Before the fix a full queue aborted the transaction, and since the partition is then taken
over and the same group rebuilt, an exactly-once group with more outputs than
`queue.buffering.max.messages` (100,000 by default, e.g. a flat_map) could never commit.
Against the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline.executor.records import OutRecord
from pipeline.kafka import create_topics
from pipeline.kafka.clients import Source, TransactionalSink

pytestmark = pytest.mark.integration


def test_a_group_with_more_outputs_than_the_queue_holds_commits_whole(
    kafka_bootstrap: str,
) -> None:
    topic = f"bigtxn-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 1})
    source = Source(kafka_bootstrap, group_id=f"paxline.{topic}", isolation="read_committed")
    sink = TransactionalSink(kafka_bootstrap, f"paxline.big.{topic}.0",
                             extra={"queue.buffering.max.messages": 50})  # fmt: skip
    sink.init(30)
    n = 2_000
    sink.begin([OutRecord(topic, b"k", b"%d" % i) for i in range(n)], [])
    sink.commit((topic, 0, n), source.group_metadata(), timeout=30)
    sink.close()
    source.close()
    conf = {"bootstrap.servers": kafka_bootstrap, "group.id": f"r-{topic}",
            "isolation.level": "read_committed", "enable.auto.commit": False}  # fmt: skip
    reader = Consumer(conf)
    reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[bytes] = []
    for _ in range(60):
        got += [m.value() for m in reader.consume(5000, 1.0) if m.error() is None]
        if len(got) >= n:
            break
    reader.close()
    assert got == [b"%d" % i for i in range(n)]
