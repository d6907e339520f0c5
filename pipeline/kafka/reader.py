"""Reading one partition from its beginning to its end: what a state restore needs from Kafka
(`pipeline.changelog`, docs/architecture.md sec. 4, "Changelogs and restore")."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import KafkaUnavailable

__all__ = ["ChangelogRecord", "read_partition"]

# key, value (None: tombstone), headers
ChangelogRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def read_partition(
    bootstrap: str,
    topic: str,
    partition: int,
    *,
    read_committed: bool,
    idle_timeout: float = 30.0,
    batch: int = 10_000,
) -> Iterator[list[ChangelogRecord]]:
    """Every record of `topic[partition]`, oldest first, in batches, up to the end as it is
    when the read starts (read_committed: the last stable offset; a restore runs after the
    partition's transactional producer was fenced, so nothing is open). Ends on the
    partition's EOF event, which librdkafka emits at the readable end also when that end is
    a transaction marker. A fresh consumer with its own group: it commits nothing.
    `KafkaUnavailable` when nothing arrives for `idle_timeout` seconds."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"paxline.restore.{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
    })  # fmt: skip
    try:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=idle_timeout
            )
        except KafkaException as exc:
            raise KafkaUnavailable(f"{topic}[{partition}]: {exc.args[0].str()}") from exc
        if high <= low:
            return
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        last = time.monotonic()
        while True:
            msgs = consumer.consume(batch, 0.5)
            out: list[ChangelogRecord] = []
            eof = False
            for m in msgs:
                err = m.error()
                if err is None:
                    out.append(
                        (m.key(), m.value(), cast(list[tuple[str, bytes]], m.headers() or []))
                    )
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof = True
                elif err.fatal() or not err.retriable():
                    raise KafkaUnavailable(f"{topic}[{partition}]: {err.str()}")
            if out:
                last = time.monotonic()
                yield out
            if eof:
                return
            if time.monotonic() - last > idle_timeout:
                raise KafkaUnavailable(
                    f"{topic}[{partition}]: no records for {idle_timeout:.0f}s before its end"
                )
    finally:
        consumer.close()
