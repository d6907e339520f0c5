"""The 3-broker KRaft cluster (paxline/localstack/kafka.py, `start_cluster`): topics get
replication 3, and a transaction commits and is read while one broker is SIGKILLed."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from paxline.localstack import kafka as kafka_launcher
from pipeline.kafka import create_topics

pytestmark = pytest.mark.integration


def test_three_brokers_rf3_and_a_transaction_with_one_broker_killed(
    kafka_cluster: kafka_launcher.KafkaCluster,
) -> None:
    boot = kafka_cluster.bootstrap
    topic = f"rf3-{uuid.uuid4().hex[:8]}"
    create_topics(boot, {topic: 3})
    # The broker that answers may not have the new topic's metadata yet (a fresh-clone CI run
    # once got it with no partitions): ask until it shows all three, or fail at the deadline.
    admin = AdminClient({"bootstrap.servers": boot})
    deadline = time.monotonic() + 60
    while True:
        meta = admin.list_topics(topic, timeout=60)
        parts = meta.topics[topic].partitions
        if len(parts) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)  # poll interval of the wait above, not a synchronisation by itself
    assert len(meta.brokers) == 3
    assert len(parts) == 3
    assert {len(p.replicas) for p in parts.values()} == {3}
    # Warm the transaction coordinator while all brokers run, then kill one broker.
    producer = Producer({"bootstrap.servers": boot, "transactional.id": f"t-{topic}"})
    producer.init_transactions(120)
    victim = kafka_cluster.brokers[0]
    os.kill(victim.pid, signal.SIGKILL)
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 3)
    assert producer.flush(120) == 0
    producer.commit_transaction(120)
    consumer = Consumer(
        {"bootstrap.servers": boot, "group.id": f"g-{topic}", "isolation.level": "read_committed",
         "enable.auto.commit": False}
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    got: list[bytes] = []
    deadline = time.monotonic() + 120
    while len(got) < 30 and time.monotonic() < deadline:
        for msg in consumer.consume(30, 1.0):
            if msg.error() is None:
                got.append(msg.value())
    consumer.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(30))
