"""Show that the local Kafka and Redis answer: round-trip one record and one key."""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.kafka import create_topics
from pipeline.localstack import kafka
from pipeline.localstack import redis as redis_launcher


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kafka-dir", type=Path, required=True)
    parser.add_argument("--redis-dir", type=Path, required=True)
    args = parser.parse_args()
    broker = kafka.status(args.kafka_dir)
    server = redis_launcher.status(args.redis_dir)
    if broker is None or server is None:
        print("kafka or redis is not running; run `make demo` again")
        return 1
    topic = f"paxline-demo-{uuid.uuid4().hex[:6]}"
    create_topics(broker.bootstrap, {topic: 1})
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"hello from paxline")
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "paxline-demo"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + 20
    value = None
    while value is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            value = msg.value()
    consumer.close()
    print(f"kafka {broker.version} on {broker.bootstrap}: read back {value!r} from {topic}")
    client = redis.Redis.from_url(server.url)
    client.set("paxline:demo", "ok")
    print(
        f"redis {server.version} on 127.0.0.1:{server.port}: GET paxline:demo -> "
        f"{client.get('paxline:demo')!r}, appendonly={client.config_get('appendonly')}"
    )
    return 0 if value == b"hello from paxline" else 1


if __name__ == "__main__":
    raise SystemExit(main())
