"""The RabbitMQ sink's I/O shell in the worker (issue 19; docs/architecture.md, "RabbitMQ
queues"): one `QueuePublisher` per owned partition whose stage ends in ``to_rabbitmq()``.

The at-least-once commit protocol (pipeline/commit/protocol.py) runs ``Produce`` before
``Flush``, the state step and the checkpoint; `QueuePublisher.send` runs inside ``Produce`` and
returns only once RabbitMQ confirmed every message of the batch, so no checkpoint is ever
agreed over an input whose messages are not confirmed: a crash between the confirm and the
checkpoint publishes them again (duplicates), never loses them. The worker opens the publisher
in the takeover (its own thread), so a node that is down stalls the partition there, named,
before any record is read; a fault while sending fails the ``Produce`` step, which drops and
retakes the partition like any transient fault. Exactly-once jobs never get here (refused at
submit: pipeline/spec.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.executor.records import RABBITMQ_TOPIC, OutRecord
from pipeline.job import Job, ToRabbitMQ
from pipeline.rabbitmq.sink import Outgoing, QueueSink

__all__ = ["QueuePublisher", "publisher_for"]


@dataclass
class QueuePublisher:
    """Publishes a partition's RabbitMQ outputs to ``queue`` with confirms."""

    queue: str
    sink: QueueSink

    def send(self, outputs: list[OutRecord]) -> list[OutRecord]:
        """Publish the outputs bound for RabbitMQ and wait for every confirm; returns the
        others (changelog records) for the Kafka producer. Raises a transient
        `pipeline.rabbitmq.errors` fault if RabbitMQ does not confirm them all."""
        mine = [r for r in outputs if r.topic == RABBITMQ_TOPIC]
        if not mine:
            return outputs
        q = self.queue
        self.sink.send_all(Outgoing(q, r.value or b"", r.key) for r in mine)
        return [r for r in outputs if r.topic != RABBITMQ_TOPIC]

    def close(self) -> None:
        self.sink.close()


def publisher_for(job: Job) -> Callable[[], QueuePublisher] | None:
    """A factory of publishers for a job ending in ``to_rabbitmq()`` (None otherwise). Each
    call checks (or declares) the queue and connects, raising a transient fault if RabbitMQ
    does not answer: it runs in the worker's takeover."""
    sink = job.operators[-1] if job.operators else None
    if not isinstance(sink, ToRabbitMQ):
        return None
    op = sink

    def open_publisher() -> QueuePublisher:
        # two attempts: an idle partition's connection may have been closed by the broker
        # (missed heartbeats); the second goes on a fresh connection at once
        qs = QueueSink(op.url, attempts=2)
        try:
            qs.ensure_queue(op.queue, op.declare)
            qs.open()
        except BaseException:
            qs.close()
            raise
        return QueuePublisher(op.queue, qs)

    return open_publisher
