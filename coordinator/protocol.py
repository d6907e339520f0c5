"""The coordinator's typed protocol: what the HTTP API, its client and the workers exchange.

One module, so that a request body, a reply and a validation limit are defined once and every
side decodes the same structs (docs/architecture.md, "Protocol"): the server validates bodies
against them, the client returns them, and the pipeline checks a job against the same limits
before it is submitted. Pure: msgspec structs and constants, no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

__all__ = [
    "GUARANTEES",
    "JOB_NAME",
    "MAX_CAPACITY",
    "MAX_PARTITIONS",
    "TOPIC",
    "AssignedPartition",
    "CheckpointBatchBody",
    "CheckpointBody",
    "CheckpointGroupBody",
    "Guarantee",
    "HeartbeatBody",
    "HeartbeatReply",
    "JobInfo",
    "JobSpec",
    "OffsetEntry",
    "PartitionOffsets",
    "PartitionStatus",
    "Progress",
    "ResetBody",
    "SourceSpec",
    "Status",
    "WorkerInfo",
    "valid_topic",
]

# --------------------------------------------------------------------------------------
# Limits (the coordinator enforces them; the pipeline checks the same ones at submit)
# --------------------------------------------------------------------------------------

#: Upper bounds keep one command from making every replica allocate without limit.
MAX_PARTITIONS = 100_000
MAX_CAPACITY = 1_000_000
#: Job names and Kafka topic names: the characters Kafka allows in a topic name.
JOB_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
Guarantee = Literal["at-least-once", "exactly-once"]
GUARANTEES: tuple[Guarantee, ...] = ("at-least-once", "exactly-once")


def valid_topic(topic: object) -> bool:
    return isinstance(topic, str) and bool(TOPIC.fullmatch(topic)) and topic not in (".", "..")


# --------------------------------------------------------------------------------------
# Job spec (stored through Paxos; the body of POST /v1/jobs)
# --------------------------------------------------------------------------------------


class SourceSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One input topic of a job and how many partitions it has (repartition topics too)."""

    topic: str
    partitions: int


class JobSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What Paxos stores about a job; the code itself ships with the deployment.

    ``sink`` and ``settings`` are opaque JSON objects owned by the pipeline runtime; the
    machine only checks that they are JSON-like so snapshots stay deterministic.
    """

    name: str
    entrypoint: str
    sources: tuple[SourceSpec, ...]
    sink: dict[str, Any]
    guarantee: Guarantee = "at-least-once"
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Read models (answers of reads, served after read-index)
# --------------------------------------------------------------------------------------


class JobInfo(msgspec.Struct, frozen=True):
    spec: JobSpec
    paused: bool
    submitted_at: int


class WorkerInfo(msgspec.Struct, frozen=True):
    worker_id: str
    capacity: int
    registered_at: int
    assigned: int


class AssignedPartition(msgspec.Struct, frozen=True):
    """``offset`` is the next offset to read; ``None`` means never committed (start at
    the earliest available offset)."""

    job: str
    topic: str
    partition: int
    epoch: int
    offset: int | None


class PartitionStatus(msgspec.Struct, frozen=True):
    """``epoch`` is 0 for a partition that has never had an owner."""

    topic: str
    partition: int
    offset: int | None
    owner: str | None
    epoch: int


class Status(msgspec.Struct, frozen=True):
    applied_slot: int
    last_epoch: int
    jobs: int
    paused_jobs: int
    workers: int
    partitions: int
    assigned_partitions: int
    unassigned_partitions: int


# --------------------------------------------------------------------------------------
# Request bodies and replies of the HTTP API
# --------------------------------------------------------------------------------------


class OffsetEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    topic: str
    partition: int
    offset: int


class CheckpointBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /v1/jobs/{name}/checkpoints: the offsets a worker has finished, at its epoch."""

    worker_id: str
    epoch: int
    offsets: list[OffsetEntry]


class CheckpointGroupBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One (job, epoch) group of a checkpoint batch."""

    job: str
    epoch: int
    offsets: list[OffsetEntry]


class CheckpointBatchBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /v1/workers/{id}/checkpoints: all of a worker's groups of one interval, each
    committed (or fenced) on its own, in one Paxos command (issue 17)."""

    groups: list[CheckpointGroupBody]


class ResetBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /v1/jobs/{name}/offsets:reset (the job must be paused)."""

    offsets: list[OffsetEntry]


class Progress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A worker's view of one assigned partition: next offset it will process, Kafka's end.
    ``stalled`` says why it is not processing right now ("Redis unreachable") and
    ``stalled_since`` since when (Unix seconds); both ``None`` while it runs."""

    job: str
    topic: str
    partition: int
    position: int | None
    end: int
    stalled: str | None = None
    stalled_since: float | None = None


class HeartbeatBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """POST /v1/workers/{id}/heartbeat: keeps the session and (re)registers the worker."""

    capacity: int = 1024
    progress: list[Progress] = msgspec.field(default_factory=list)


class HeartbeatReply(msgspec.Struct, frozen=True):
    """The worker's assignment, each partition with the epoch it must commit under."""

    worker_id: str
    session_timeout: float
    assignment: list[AssignedPartition]


class PartitionOffsets(msgspec.Struct, frozen=True):
    """GET /v1/jobs/{name}/offsets: the agreed state of a partition plus the end offset a
    worker last reported (``None`` when no fresh report exists) and the lag behind it: records
    left to read, so transaction markers do not count and a caught-up partition shows 0."""

    topic: str
    partition: int
    offset: int | None
    owner: str | None
    epoch: int
    end_offset: int | None = None
    lag: int | None = None
    stalled: str | None = None
    stalled_since: float | None = None
