"""The only package that imports confluent_kafka: clients, admin and codecs for the runtime."""

from pipeline.kafka.admin import create_topics, end_offsets

__all__ = ["create_topics", "end_offsets"]
