"""The only package that imports confluent_kafka: clients, admin and codecs for the runtime."""

from pipeline.kafka.admin import committed_offsets, create_topics, end_offsets

__all__ = ["committed_offsets", "create_topics", "end_offsets"]
