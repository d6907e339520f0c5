"""What the worker and the executor hand each other: records in, records out, state access.

These types are the executor's whole interface to the worker, and the Kafka clients, the
transactional sink and provenance use them too, so this module depends on nothing else in
the package: anything may import it without pulling in the executor's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import PipelineError, StateUnavailable

__all__ = [
    "FILES_TOPIC",
    "RABBITMQ_TOPIC",
    "BatchResult",
    "DeadLetter",
    "InRecord",
    "OutRecord",
    "PlanError",
    "StateAccess",
    "StateAccessError",
    "StateReadUnavailable",
]


#: The "topic" of a file sink's outputs (issue 18): JSON values the worker hands to its file
#: writer (pipeline/files/) instead of Kafka; not a valid Kafka topic name, so a stray one
#: fails loudly at the producer.
FILES_TOPIC = "\x00files"

#: The "topic" of a RabbitMQ sink's outputs (issue 19): encoded values the worker publishes to
#: the job's queue (pipeline/rabbitmq/runner.py) instead of producing them to Kafka.
RABBITMQ_TOPIC = "\x00rabbitmq"


# InRecord and OutRecord are made once per record on the hot path: slotted but not frozen,
# because a frozen dataclass's __init__ goes through object.__setattr__ (about 3x slower).
# Treat them as immutable all the same.
@dataclass(slots=True)
class InRecord:
    """One Kafka record as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class OutRecord:
    """A record to produce; the producer picks the partition from ``key`` unless
    ``partition`` (>= 0) names it (changelog records go to their input's partition, whatever
    the key). ``value`` None is a tombstone (only changelog records use one)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = -1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed; ``stage`` names the operator (e.g. ``map#3``)."""

    record: InRecord
    error: str
    stage: str


class StateAccess(Protocol):
    """Partition-local keyed state, injected by the worker (memory or Redis)."""

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]: ...


@dataclass
class BatchResult:
    """Everything one batch produced: the executor applies none of it, the worker does."""

    outputs: list[OutRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    state_writes: dict[str, bytes | None] = field(default_factory=dict)
    view_writes: dict[str, bytes | None] = field(default_factory=dict)
    late_dropped: int = 0
    #: windowed stages: the partition's watermark after the batch and the watermark at which
    #: its next window closes (None: no window open), for the idle timers (executor/ticks.py)
    watermark: int | None = None
    next_close: int | None = None


class PlanError(PipelineError, LookupError):
    """A worker asked for a stage or topic this plan does not have."""


class StateAccessError(PipelineError):
    """Reading or decoding state failed: an infrastructure problem, never a dead letter."""


class StateReadUnavailable(StateAccessError, StateUnavailable):
    """A state read failed because the store is unavailable for now (its own
    `TransientError`): still never a dead letter (the executor re-raises every
    StateAccessError), and for the worker a transient fault that stalls the partition and
    retakes it, not a bug that ends the process (docs/architecture.md, sec. 6)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
