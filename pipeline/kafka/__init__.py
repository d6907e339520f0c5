"""The only package that imports confluent_kafka: clients, admin and codecs for the runtime."""

from pipeline.kafka.admin import (
    KafkaUnavailable,
    committed_lag,
    committed_offsets,
    create_topics,
    delete_topics,
    end_offsets,
    topic_partitions,
)

__all__ = [
    "KafkaUnavailable",
    "committed_lag",
    "committed_offsets",
    "create_topics",
    "delete_topics",
    "end_offsets",
    "topic_partitions",
]
