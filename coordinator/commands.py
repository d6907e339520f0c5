"""Commands and results of the metadata state machine.

These types are the wire format of the replicated log: every replica decodes the same bytes
into them, so they are plain ``msgspec`` structs with a ``type`` tag and no behaviour. The job
spec and the read models they refer to are the API's too, and live in
:mod:`coordinator.protocol`. Like the machine, this module is pure.

Errors are results, never exceptions, because an exception inside ``apply`` would stop the
log on every replica at once.
"""

from __future__ import annotations

import msgspec

from coordinator.errors import CoordinatorError
from coordinator.protocol import JobSpec

__all__ = [
    "CancelJob",
    "CheckpointBatchApplied",
    "CheckpointCommitted",
    "CheckpointGroup",
    "Command",
    "CommandDecodeError",
    "CommitCheckpoint",
    "CommitCheckpointBatch",
    "DeregisterWorker",
    "ExpireWorker",
    "Fenced",
    "GroupResult",
    "InvalidCommand",
    "JobCancelled",
    "JobExists",
    "JobNotPaused",
    "JobPaused",
    "JobResumed",
    "JobSubmitted",
    "OffsetRegression",
    "OffsetsReset",
    "PartitionsShrink",
    "PartitionsUpdated",
    "PauseJob",
    "RegisterWorker",
    "ResetOffsets",
    "Result",
    "ResultDecodeError",
    "ResumeJob",
    "StaleExpiry",
    "SubmitJob",
    "UnknownJob",
    "UnknownPartition",
    "UnknownTopic",
    "UnknownWorker",
    "UpdatePartitions",
    "WorkerDeregistered",
    "WorkerExpired",
    "WorkerRegistered",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
]

TopicPartition = tuple[str, int]


class CommandDecodeError(CoordinatorError, ValueError):
    """Bytes that are not a well-formed command; the message names the offending field."""


class ResultDecodeError(CoordinatorError, ValueError):
    """Bytes that are not a well-formed result."""


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


class SubmitJob(msgspec.Struct, frozen=True, tag="submit_job", forbid_unknown_fields=True):
    """Create a job; its partitions are assigned immediately if workers exist."""

    spec: JobSpec


class CancelJob(msgspec.Struct, frozen=True, tag="cancel_job", forbid_unknown_fields=True):
    """Delete a job with its offsets; the name may then be submitted afresh."""

    name: str


class PauseJob(msgspec.Struct, frozen=True, tag="pause_job", forbid_unknown_fields=True):
    """Revoke every partition of a job so that offsets can be reset safely."""

    name: str


class ResumeJob(msgspec.Struct, frozen=True, tag="resume_job", forbid_unknown_fields=True):
    """Assign a paused job's partitions again, under new epochs."""

    name: str


class UpdatePartitions(
    msgspec.Struct, frozen=True, tag="update_partitions", forbid_unknown_fields=True
):
    """Grow a source topic's partition count (Kafka partitions can only be added)."""

    job: str
    topic: str
    count: int


class RegisterWorker(
    msgspec.Struct, frozen=True, tag="register_worker", forbid_unknown_fields=True
):
    """Add a live worker able to own up to ``capacity`` partitions across all jobs."""

    worker_id: str
    capacity: int


class DeregisterWorker(
    msgspec.Struct, frozen=True, tag="deregister_worker", forbid_unknown_fields=True
):
    """A worker leaving gracefully after its final commits."""

    worker_id: str


class ExpireWorker(msgspec.Struct, frozen=True, tag="expire_worker", forbid_unknown_fields=True):
    """Proposed by the leader when a worker's session lapses.

    ``registered_at`` (the slot of the registration the leader saw lapse) guards against a
    race where the worker re-registered after the leader decided to expire it; ``None``
    expires whatever registration is current.
    """

    worker_id: str
    registered_at: int | None = None


class CommitCheckpoint(
    msgspec.Struct, frozen=True, tag="commit_checkpoint", forbid_unknown_fields=True
):
    """Record offsets (next offset to read) for partitions the worker owns at ``epoch``."""

    job: str
    worker_id: str
    epoch: int
    offsets: dict[TopicPartition, int]


class CheckpointGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One (job, epoch) group of a :class:`CommitCheckpointBatch`: what one
    :class:`CommitCheckpoint` carries, minus the worker."""

    job: str
    epoch: int
    offsets: dict[TopicPartition, int]


class CommitCheckpointBatch(
    msgspec.Struct, frozen=True, tag="commit_checkpoint_batch", forbid_unknown_fields=True
):
    """All of one worker's checkpoint groups of one interval in one command (issue 17).

    One Paxos command (one session seq, one slot at most) instead of one per (job, epoch)
    group: at 1,000 workers holding 10 jobs' partitions each, per-group commits offered
    ~10,000 commands/s. Each group is applied exactly as a :class:`CommitCheckpoint` of its
    own would be, in the order given, and fenced or refused on its own (a stale epoch in
    one group rejects only that group); the result lists each group's outcome. Only a
    malformed batch (no groups, a bad offset map, a partition in two groups) is refused
    whole, with nothing applied."""

    worker_id: str
    groups: tuple[CheckpointGroup, ...]


class ResetOffsets(msgspec.Struct, frozen=True, tag="reset_offsets", forbid_unknown_fields=True):
    """Operator override of agreed offsets, allowed only while the job is paused."""

    job: str
    offsets: dict[TopicPartition, int]


Command = (
    SubmitJob
    | CancelJob
    | PauseJob
    | ResumeJob
    | UpdatePartitions
    | RegisterWorker
    | DeregisterWorker
    | ExpireWorker
    | CommitCheckpoint
    | CommitCheckpointBatch
    | ResetOffsets
)

# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


class JobSubmitted(msgspec.Struct, frozen=True, tag="job_submitted"):
    name: str


class JobCancelled(msgspec.Struct, frozen=True, tag="job_cancelled"):
    name: str


class JobPaused(msgspec.Struct, frozen=True, tag="job_paused"):
    """``changed`` is false when the job was already paused (pausing is idempotent)."""

    name: str
    changed: bool


class JobResumed(msgspec.Struct, frozen=True, tag="job_resumed"):
    """``changed`` is false when the job was already running (resuming is idempotent)."""

    name: str
    changed: bool


class PartitionsUpdated(msgspec.Struct, frozen=True, tag="partitions_updated"):
    job: str
    topic: str
    count: int


class WorkerRegistered(msgspec.Struct, frozen=True, tag="worker_registered"):
    """``registered_at`` identifies this registration (see ``ExpireWorker``)."""

    worker_id: str
    capacity: int
    registered_at: int


class WorkerDeregistered(msgspec.Struct, frozen=True, tag="worker_deregistered"):
    worker_id: str


class WorkerExpired(msgspec.Struct, frozen=True, tag="worker_expired"):
    worker_id: str


class CheckpointCommitted(msgspec.Struct, frozen=True, tag="checkpoint_committed"):
    job: str
    worker_id: str
    epoch: int


class OffsetsReset(msgspec.Struct, frozen=True, tag="offsets_reset"):
    job: str


class UnknownJob(msgspec.Struct, frozen=True, tag="unknown_job"):
    name: str


class JobExists(msgspec.Struct, frozen=True, tag="job_exists"):
    name: str


class JobNotPaused(msgspec.Struct, frozen=True, tag="job_not_paused"):
    name: str


class UnknownWorker(msgspec.Struct, frozen=True, tag="unknown_worker"):
    worker_id: str


class StaleExpiry(msgspec.Struct, frozen=True, tag="stale_expiry"):
    """The worker re-registered after the expiry was decided; it stays live."""

    worker_id: str
    registered_at: int
    proposed: int


class UnknownTopic(msgspec.Struct, frozen=True, tag="unknown_topic"):
    job: str
    topic: str


class UnknownPartition(msgspec.Struct, frozen=True, tag="unknown_partition"):
    job: str
    topic: str
    partition: int


class PartitionsShrink(msgspec.Struct, frozen=True, tag="partitions_shrink"):
    job: str
    topic: str
    current: int
    proposed: int


class Fenced(msgspec.Struct, frozen=True, tag="fenced"):
    """The committer is not the owner at that epoch; ``owner``/``current_epoch`` say who is.

    Names the first offending partition in (topic, partition) order.
    """

    job: str
    topic: str
    partition: int
    worker_id: str
    epoch: int
    owner: str | None
    current_epoch: int


class OffsetRegression(msgspec.Struct, frozen=True, tag="offset_regression"):
    """A commit would move an agreed offset backwards; names the first such partition."""

    job: str
    topic: str
    partition: int
    current: int
    proposed: int


class InvalidCommand(msgspec.Struct, frozen=True, tag="invalid_command"):
    reason: str


#: What one group of a :class:`CommitCheckpointBatch` can come to: exactly the results a
#: :class:`CommitCheckpoint` of that group alone could have had (bar ``InvalidCommand``,
#: which refuses the whole batch).
GroupResult = CheckpointCommitted | Fenced | OffsetRegression | UnknownJob | UnknownPartition


class CheckpointBatchApplied(msgspec.Struct, frozen=True, tag="checkpoint_batch_applied"):
    """The outcome of each group of a :class:`CommitCheckpointBatch`, in the batch's order.

    The machine answers a committed group with ``None``, not a ``CheckpointCommitted``: the
    result is kept in the replicated session table (and so in every snapshot) for each
    worker, and ten ``CheckpointCommitted`` per worker made the full-load snapshot 2.6x
    larger (1.35 MB, catch-up from empty 14.6 s). The API answers each ``None`` as the
    ``CheckpointCommitted`` of its group, so clients see only ``GroupResult`` values."""

    worker_id: str
    results: tuple[GroupResult | None, ...]

    def expanded(self, groups: tuple[CheckpointGroup, ...]) -> CheckpointBatchApplied:
        """Every ``None`` as its group's ``CheckpointCommitted`` (what the API answers)."""
        return CheckpointBatchApplied(
            self.worker_id,
            tuple(
                CheckpointCommitted(g.job, self.worker_id, g.epoch) if r is None else r
                for g, r in zip(groups, self.results, strict=True)
            ),
        )


Result = (
    JobSubmitted
    | JobCancelled
    | JobPaused
    | JobResumed
    | PartitionsUpdated
    | WorkerRegistered
    | WorkerDeregistered
    | WorkerExpired
    | CheckpointCommitted
    | CheckpointBatchApplied
    | OffsetsReset
    | UnknownJob
    | JobExists
    | JobNotPaused
    | UnknownWorker
    | StaleExpiry
    | UnknownTopic
    | UnknownPartition
    | PartitionsShrink
    | Fenced
    | OffsetRegression
    | InvalidCommand
)

# --------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_command_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)
_result_decoder: msgspec.msgpack.Decoder[Result] = msgspec.msgpack.Decoder(Result)


def _sorted_offsets(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    return dict(sorted(offsets.items()))


def encode_command(cmd: Command) -> bytes:
    """Encode a command as msgpack; offset maps are sorted so equal commands give equal
    bytes."""
    if isinstance(cmd, CommitCheckpoint | ResetOffsets):
        cmd = msgspec.structs.replace(cmd, offsets=_sorted_offsets(cmd.offsets))
    elif isinstance(cmd, CommitCheckpointBatch):
        groups = tuple(
            msgspec.structs.replace(g, offsets=_sorted_offsets(g.offsets)) for g in cmd.groups
        )
        cmd = msgspec.structs.replace(cmd, groups=groups)
    return _encoder.encode(cmd)


def decode_command(data: bytes) -> Command:
    """Decode a command, raising :class:`CommandDecodeError` that names the bad field."""
    try:
        return _command_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CommandDecodeError(f"malformed command: {exc}") from exc


def encode_result(result: Result) -> bytes:
    return _encoder.encode(result)


def decode_result(data: bytes) -> Result:
    try:
        return _result_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResultDecodeError(f"malformed result: {exc}") from exc
