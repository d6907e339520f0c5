"""The only package that imports confluent_kafka: clients, admin and codecs for the runtime."""

from pipeline.kafka.admin import (
    BrokerUnreachable,
    committed_lag,
    committed_offsets,
    create_topics,
    delete_topics,
    end_offsets,
    topic_partitions,
)
from pipeline.kafka.reader import ChangelogRecord, read_partition

__all__ = [
    "BrokerUnreachable",
    "ChangelogRecord",
    "committed_lag",
    "committed_offsets",
    "create_topics",
    "delete_topics",
    "end_offsets",
    "read_partition",
    "topic_partitions",
]
