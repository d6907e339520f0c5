"""Where a job's records come from: the worker's one seam for sources other than Kafka
(issue 19; docs/architecture.md, "RabbitMQ sources").

A job reads Kafka everywhere except, optionally, its first stage: a RabbitMQ stream source
keys stage 0 by an empty Kafka anchor topic whose partitions stand for the streams. The worker
holds one `RecordSource` per job and never asks where records come from; `open_source` gives
it the Kafka consumer, or a `RoutedSource` that sends the anchor topic's partitions to a
`StreamReader` and everything else (repartition and joined topics) to the Kafka consumer.
Offsets, checkpoints, transactions and takeovers stay Kafka's and the coordinators' business,
as they are for a Kafka source.

A RabbitMQ queue source (at-least-once) is routed the same way to a `QueueReader`, which also
needs two things from the worker: its faults (`faults`: the partitions to stall and retake)
and the agreed checkpoints (`agreed`: what it may acknowledge). For a Kafka source both are
no-ops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pipeline.executor.records import InRecord
from pipeline.job import Job, RabbitQueue, Source
from pipeline.kafka.clients import TP
from pipeline.kafka.clients import Source as KafkaSource

__all__ = [
    "RecordSource",
    "RoutedSource",
    "agreed",
    "check",
    "faults",
    "kafka_of",
    "open_source",
]


class RecordSource(Protocol):
    """What the worker uses of a job's input (the Kafka consumer's surface)."""

    assigned: set[TP]
    paused: set[TP]

    def assign(self, partitions: list[tuple[str, int, int | None]]) -> None: ...
    def unassign(self, partitions: list[TP]) -> None: ...
    def pause(self, partitions: list[TP]) -> None: ...
    def resume(self, partitions: list[TP]) -> None: ...
    def poll_batch(self, max_records: int, timeout: float) -> dict[TP, list[InRecord]]: ...
    def high_watermarks(self, partitions: list[TP]) -> dict[TP, int]: ...
    def positions(self, partitions: list[TP]) -> dict[TP, int]: ...
    def close(self) -> None: ...


class RoutedSource:
    """The anchor topic's partitions read by `reader`, all other topics by `kafka`. The Kafka
    consumer stays the job's group member: `group_metadata` (exactly-once transactions) and
    `committed` are its."""

    def __init__(self, kafka: KafkaSource, reader: RecordSource, topic: str) -> None:
        self.kafka, self.reader, self.topic = kafka, reader, topic

    @property
    def assigned(self) -> set[TP]:
        return self.kafka.assigned | self.reader.assigned

    @property
    def paused(self) -> set[TP]:
        return self.kafka.paused | self.reader.paused

    def _split(self, tps: Iterable[TP]) -> tuple[list[TP], list[TP]]:
        mine: list[TP] = []
        kafka: list[TP] = []
        for tp in tps:
            (mine if tp[0] == self.topic else kafka).append(tp)
        return mine, kafka

    def assign(self, partitions: list[tuple[str, int, int | None]]) -> None:
        self.reader.assign([x for x in partitions if x[0] == self.topic])
        self.kafka.assign([x for x in partitions if x[0] != self.topic])

    def unassign(self, partitions: list[TP]) -> None:
        mine, kafka = self._split(partitions)
        self.reader.unassign(mine)
        self.kafka.unassign(kafka)

    def pause(self, partitions: list[TP]) -> None:
        mine, kafka = self._split(partitions)
        self.reader.pause(mine)
        self.kafka.pause(kafka)

    def resume(self, partitions: list[TP]) -> None:
        mine, kafka = self._split(partitions)
        self.reader.resume(mine)
        self.kafka.resume(kafka)

    def poll_batch(self, max_records: int, timeout: float) -> dict[TP, list[InRecord]]:
        out = self.reader.poll_batch(max_records, 0)
        if self.kafka.assigned:
            out.update(self.kafka.poll_batch(max_records, 0 if out else timeout))
        elif not out:
            out = self.reader.poll_batch(max_records, timeout)
        return out

    def high_watermarks(self, partitions: list[TP]) -> dict[TP, int]:
        mine, kafka = self._split(partitions)
        return {**self.reader.high_watermarks(mine), **self.kafka.high_watermarks(kafka)}

    def positions(self, partitions: list[TP]) -> dict[TP, int]:
        mine, kafka = self._split(partitions)
        return {**self.reader.positions(mine), **self.kafka.positions(kafka)}

    def group_metadata(self) -> Any:
        return self.kafka.group_metadata()

    def committed(self, partitions: Iterable[TP], timeout: float = 10.0) -> dict[TP, int | None]:
        return self.kafka.committed(partitions, timeout)

    def close(self) -> None:
        self.reader.close()
        self.kafka.close()


def faults(source: KafkaSource | RoutedSource) -> dict[TP, Exception]:
    """Partitions whose RabbitMQ queue subscription failed since the last call, with the
    (transient) fault to stall them with; {} for every other source."""
    reader = source.reader if isinstance(source, RoutedSource) else None
    report = getattr(reader, "faults", None)
    return report() if report is not None else {}


def check(source: KafkaSource | RoutedSource, tp: TP) -> None:
    """Before a takeover installs ``tp``: raise the transient fault a queue source has right
    now (RabbitMQ down, queue missing), so the partition stays stalled; no-op otherwise."""
    if not isinstance(source, RoutedSource) or tp[0] != source.topic:
        return
    probe = getattr(source.reader, "check", None)
    if probe is not None:
        probe(tp[1])


def agreed(source: KafkaSource | RoutedSource, tp: TP, offset: int) -> None:
    """A checkpoint of ``tp`` at ``offset`` was agreed: a queue source acknowledges the
    messages it covers; nothing to do for any other source."""
    reader = source.reader if isinstance(source, RoutedSource) else None
    ack = getattr(reader, "agreed", None)
    if ack is not None:
        ack(tp, offset)


def kafka_of(source: KafkaSource | RoutedSource) -> KafkaSource:
    """The Kafka consumer of a job's source (committed offsets, group metadata)."""
    return source.kafka if isinstance(source, RoutedSource) else source


def open_source(
    job: Job,
    kafka: str,
    group_id: str,
    isolation: str,
    *,
    kafka_source: Callable[..., KafkaSource] = KafkaSource,
) -> KafkaSource | RoutedSource:
    """The job's record source: the Kafka consumer, routed for a RabbitMQ stream source.

    The consumer is made first (the worker's group member in every case); if the RabbitMQ
    reader cannot be made, the consumer is closed before the error goes up, so a job that
    fails to open leaves no consumer (threads, sockets, a group member) behind.
    ``kafka_source`` is the consumer's constructor (the seam the tests use to see it)."""
    consumer = kafka_source(kafka, group_id=group_id, isolation=isolation)
    first = job.operators[0] if job.operators else None
    if not isinstance(first, Source) or first.rabbitmq is None:
        return consumer
    try:
        origin = first.rabbitmq
        reader: RecordSource
        if isinstance(origin, RabbitQueue):
            from pipeline.rabbitmq.queues import QueueReader

            queues = {p: origin.queue_of(p, first.partitions) for p in range(first.partitions)}
            reader = QueueReader(first.topic, queues, origin.url, origin.prefetch)
        else:
            from pipeline.rabbitmq.streams import StreamReader

            streams = {p: origin.stream_of(p, first.partitions) for p in range(first.partitions)}
            reader = StreamReader(first.topic, streams, origin.url)
    except BaseException:
        consumer.close()
        raise
    return RoutedSource(consumer, reader, first.topic)
