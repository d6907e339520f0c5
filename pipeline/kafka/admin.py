"""Topic administration: the runtime creates its topics up front (auto-create is off)."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.errors import PipelineError

__all__ = ["committed_offsets", "create_topics", "end_offsets", "topic_replication"]


def topic_replication(brokers: int) -> int:
    """The replication factor a new topic gets on a cluster of `brokers` brokers."""
    return max(1, min(3, brokers))


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
    replication: int | None = None,
) -> None:
    """Create each topic with the given partition count; an existing topic is accepted only
    if its partition count matches, so a silent mismatch can never skew assignment. The
    replication factor is, unless given, what the cluster allows: min(3, brokers)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    if replication is None:
        replication = topic_replication(len(admin.list_topics(timeout=timeout).brokers))
    new = [NewTopic(name, n, replication, config=dict(config or {})) for name, n in topics.items()]
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != err.TOPIC_ALREADY_EXISTS:
                raise PipelineError(f"cannot create topic {name!r}: {err.str()}") from exc
            meta = admin.list_topics(name, timeout=timeout).topics[name]
            if len(meta.partitions) != topics[name]:
                raise PipelineError(
                    f"topic {name!r} exists with {len(meta.partitions)} partitions, "
                    f"expected {topics[name]}"
                ) from exc


def end_offsets(
    bootstrap: str, partitions: list[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """High watermarks (next offset to be written) per (topic, partition)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "paxline-admin", "enable.auto.commit": False}
    )
    try:
        out: dict[tuple[str, int], int] = {}
        for topic, part in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout)
            out[(topic, part)] = int(high)
        return out
    finally:
        consumer.close()


def committed_offsets(
    bootstrap: str, group: str, partitions: list[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int | None]:
    """Offsets committed for `group` (exactly-once jobs commit inside their transactions to
    group `paxline.{job}`); None where nothing was committed."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        got = consumer.committed(tps, timeout=timeout)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in got}
    finally:
        consumer.close()
