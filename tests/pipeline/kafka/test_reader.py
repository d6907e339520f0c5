"""Reading a changelog partition to its end (issue 16), against the real broker: read_committed
skips aborted transactions and stops at the end even when the last thing there is a
transaction marker; an empty partition reads as nothing."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer

from pipeline.kafka import create_topics, read_partition

pytestmark = pytest.mark.integration


def _txn_producer(bootstrap: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": uuid.uuid4().hex})
    p.init_transactions(30)
    return p


def test_read_committed_reads_committed_records_to_the_end_and_skips_aborted_ones(
    kafka_bootstrap: str,
) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {topic: 2})
    p = _txn_producer(kafka_bootstrap)
    p.begin_transaction()
    p.produce(topic, b"1", b"a", 1, headers=[("h", b"x")])
    p.produce(topic, None, b"b", 1)  # a tombstone
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"lost", b"a", 1)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"2", b"c", 1)
    p.commit_transaction(30)  # the partition ends with a commit marker

    got = [r for batch in read_partition(kafka_bootstrap, topic, 1, read_committed=True)
           for r in batch]  # fmt: skip
    assert got == [(b"a", b"1", [("h", b"x")]), (b"b", None, []), (b"c", b"2", [])]
    assert list(read_partition(kafka_bootstrap, topic, 0, read_committed=True)) == []
