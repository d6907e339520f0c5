"""Each command's results, success and error, as scenario tables.

Every scenario starts from the same small cluster (see ``base``), applies a few setup
commands, then one command, and states the exact result and what changed.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from coordinator.commands import (
    CancelJob,
    CheckpointCommitted,
    Command,
    CommitCheckpoint,
    DeregisterWorker,
    ExpireWorker,
    Fenced,
    InvalidCommand,
    JobCancelled,
    JobExists,
    JobNotPaused,
    JobPaused,
    JobResumed,
    JobSubmitted,
    OffsetRegression,
    OffsetsReset,
    PartitionsShrink,
    PartitionsUpdated,
    PauseJob,
    RegisterWorker,
    ResetOffsets,
    Result,
    ResumeJob,
    StaleExpiry,
    SubmitJob,
    UnknownJob,
    UnknownPartition,
    UnknownTopic,
    UnknownWorker,
    UpdatePartitions,
    WorkerDeregistered,
    WorkerExpired,
    WorkerRegistered,
)
from coordinator.metadata import MetadataMachine
from coordinator.protocol import AssignedPartition, JobSpec, PartitionStatus, SourceSpec


def spec(name: str = "wc", **overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "name": name,
        "entrypoint": "examples/wordcount.py:job",
        "sources": (SourceSpec("clicks", 2), SourceSpec("words", 4)),
        "sink": {"kind": "kafka", "topic": "counts"},
        "guarantee": "exactly-once",
        "settings": {"batch_size": 500},
    }
    fields.update(overrides)
    return JobSpec(**fields)


def base() -> MetadataMachine:
    """Job "wc" (clicks:2, words:4) and workers a, b registered at slots 2 and 3.

    a owns clicks/0, clicks/1, words/0 at epoch 2; b owns words/1..3 at epoch 3.
    """
    m = MetadataMachine()
    setup: list[Command] = [SubmitJob(spec()), RegisterWorker("a", 100), RegisterWorker("b", 100)]
    for slot, cmd in enumerate(setup, start=1):
        m.apply_command(cmd, slot)
    return m


def run(setup: list[Command], cmd: Command) -> tuple[MetadataMachine, Result, bytes]:
    """Apply ``setup`` at slots 10, 11, ... and then ``cmd`` at the next slot."""
    m = base()
    for slot, c in enumerate(setup, start=10):
        m.apply_command(c, slot)
    before = m.snapshot()
    return m, m.apply_command(cmd, 10 + len(setup)), before


def state_without_slot(m: MetadataMachine) -> tuple[object, ...]:
    return (
        m.jobs(),
        m.workers(),
        {j.spec.name: m.offsets(j.spec.name) for j in m.jobs()},
        msgspec.structs.replace(m.status(), applied_slot=0),
    )


def unchanged(m: MetadataMachine, before: bytes) -> bool:
    other = MetadataMachine()
    other.restore(before)
    return state_without_slot(other) == state_without_slot(m)


def test_base_cluster_layout() -> None:
    m = base()
    assert [(p.topic, p.partition, p.epoch) for p in m.assignment("a")] == [
        ("clicks", 0, 2),
        ("clicks", 1, 2),
        ("words", 0, 2),
    ]
    assert [(p.topic, p.partition, p.epoch) for p in m.assignment("b")] == [
        ("words", 1, 3),
        ("words", 2, 3),
        ("words", 3, 3),
    ]
    assert all(p.offset is None for p in m.assignment("a")), "never committed: start earliest"


A_EPOCH, B_EPOCH = 2, 3

# (id, setup commands, command, expected result)
SUCCESS: list[tuple[str, list[Command], Command, Result]] = [
    ("submit", [], SubmitJob(spec("other")), JobSubmitted("other")),
    ("cancel", [], CancelJob("wc"), JobCancelled("wc")),
    ("cancel then resubmit", [CancelJob("wc")], SubmitJob(spec()), JobSubmitted("wc")),
    ("pause", [], PauseJob("wc"), JobPaused("wc", changed=True)),
    ("pause twice", [PauseJob("wc")], PauseJob("wc"), JobPaused("wc", changed=False)),
    ("resume", [PauseJob("wc")], ResumeJob("wc"), JobResumed("wc", changed=True)),
    ("resume running", [], ResumeJob("wc"), JobResumed("wc", changed=False)),
    ("grow", [], UpdatePartitions("wc", "words", 6), PartitionsUpdated("wc", "words", 6)),
    ("same count", [], UpdatePartitions("wc", "words", 4), PartitionsUpdated("wc", "words", 4)),
    ("register", [], RegisterWorker("c", 5), WorkerRegistered("c", 5, 10)),
    ("re-register keeps identity", [], RegisterWorker("a", 7), WorkerRegistered("a", 7, 2)),
    ("deregister", [], DeregisterWorker("a"), WorkerDeregistered("a")),
    ("expire", [], ExpireWorker("b"), WorkerExpired("b")),
    ("expire guarded", [], ExpireWorker("b", registered_at=3), WorkerExpired("b")),
    (
        "commit",
        [],
        CommitCheckpoint("wc", "a", A_EPOCH, {("clicks", 0): 10, ("words", 0): 3}),
        CheckpointCommitted("wc", "a", A_EPOCH),
    ),
    (
        "commit same offset again",
        [CommitCheckpoint("wc", "b", B_EPOCH, {("words", 1): 10})],
        CommitCheckpoint("wc", "b", B_EPOCH, {("words", 1): 10}),
        CheckpointCommitted("wc", "b", B_EPOCH),
    ),
    (
        "reset while paused, backwards",
        [CommitCheckpoint("wc", "b", B_EPOCH, {("words", 1): 10}), PauseJob("wc")],
        ResetOffsets("wc", {("words", 1): 2, ("clicks", 1): 0}),
        OffsetsReset("wc"),
    ),
]


@pytest.mark.parametrize(
    ("setup", "cmd", "expected"), [s[1:] for s in SUCCESS], ids=[s[0] for s in SUCCESS]
)
def test_success(setup: list[Command], cmd: Command, expected: Result) -> None:
    _, result, _ = run(setup, cmd)
    assert result == expected


ERRORS: list[tuple[str, list[Command], Command, Result]] = [
    ("submit duplicate", [], SubmitJob(spec()), JobExists("wc")),
    (
        "submit bad name",
        [],
        SubmitJob(spec("bad name")),
        InvalidCommand("spec.name must match [A-Za-z0-9._-]{1,128}, got 'bad name'"),
    ),
    (
        "submit empty name",
        [],
        SubmitJob(spec("")),
        InvalidCommand("spec.name must match [A-Za-z0-9._-]{1,128}, got ''"),
    ),
    (
        "submit zero partitions",
        [],
        SubmitJob(spec("x", sources=(SourceSpec("t", 0),))),
        InvalidCommand("spec.sources[0].partitions must be an integer in 1..100000, got 0"),
    ),
    (
        "submit no sources",
        [],
        SubmitJob(spec("x", sources=())),
        InvalidCommand("spec.sources must name at least one topic"),
    ),
    (
        "submit duplicate topic",
        [],
        SubmitJob(spec("x", sources=(SourceSpec("t", 1), SourceSpec("t", 2)))),
        InvalidCommand("spec.sources[1].topic 't' is listed twice"),
    ),
    (
        "submit bad topic",
        [],
        SubmitJob(spec("x", sources=(SourceSpec("a/b", 1),))),
        InvalidCommand(
            "spec.sources[0].topic must be a Kafka topic name ([A-Za-z0-9._-], 1-249 chars), "
            "got 'a/b'"
        ),
    ),
    (
        "submit bad entrypoint",
        [],
        SubmitJob(spec("x", entrypoint="wordcount")),
        InvalidCommand(
            "spec.entrypoint must look like 'module:attr' or 'path.py:attr', got 'wordcount'"
        ),
    ),
    (
        "submit bad guarantee",
        [],
        SubmitJob(spec("x", guarantee="maybe")),
        InvalidCommand("spec.guarantee must be one of at-least-once, exactly-once, got 'maybe'"),
    ),
    (
        "submit empty sink",
        [],
        SubmitJob(spec("x", sink={})),
        InvalidCommand("spec.sink must be a non-empty object"),
    ),
    (
        "submit non-json setting",
        [],
        SubmitJob(spec("x", settings={"k": {1: 2}})),
        InvalidCommand("spec.settings.k has a non-string key 1"),
    ),
    ("cancel unknown", [], CancelJob("nope"), UnknownJob("nope")),
    ("pause unknown", [], PauseJob("nope"), UnknownJob("nope")),
    ("resume unknown", [], ResumeJob("nope"), UnknownJob("nope")),
    ("grow unknown job", [], UpdatePartitions("nope", "words", 9), UnknownJob("nope")),
    ("grow unknown topic", [], UpdatePartitions("wc", "nope", 9), UnknownTopic("wc", "nope")),
    ("shrink", [], UpdatePartitions("wc", "words", 3), PartitionsShrink("wc", "words", 4, 3)),
    (
        "grow to zero",
        [],
        UpdatePartitions("wc", "words", 0),
        InvalidCommand("count must be an integer in 1..100000, got 0"),
    ),
    (
        "register negative capacity",
        [],
        RegisterWorker("c", -1),
        InvalidCommand("capacity must be an integer in 0..1000000, got -1"),
    ),
    (
        "register empty id",
        [],
        RegisterWorker("", 1),
        InvalidCommand("worker_id must be 1-255 printable characters without spaces, got ''"),
    ),
    ("deregister unknown", [], DeregisterWorker("z"), UnknownWorker("z")),
    ("expire unknown", [], ExpireWorker("z"), UnknownWorker("z")),
    ("expire twice", [ExpireWorker("b")], ExpireWorker("b"), UnknownWorker("b")),
    (
        "expire stale registration",
        [DeregisterWorker("b"), RegisterWorker("b", 1)],
        ExpireWorker("b", registered_at=3),
        StaleExpiry("b", 11, 3),
    ),
    ("commit unknown job", [], CommitCheckpoint("nope", "a", 2, {("t", 0): 1}), UnknownJob("nope")),
    (
        "commit nothing",
        [],
        CommitCheckpoint("wc", "a", 2, {}),
        InvalidCommand("offsets must name at least one partition"),
    ),
    (
        "commit negative",
        [],
        CommitCheckpoint("wc", "a", 2, {("words", 0): -1}),
        InvalidCommand("offset for words[0] must be an integer >= 0, got -1"),
    ),
    (
        "commit unknown partition",
        [],
        CommitCheckpoint("wc", "a", 2, {("words", 4): 1}),
        UnknownPartition("wc", "words", 4),
    ),
    (
        "commit unknown topic",
        [],
        CommitCheckpoint("wc", "a", 2, {("zz", 0): 1}),
        UnknownPartition("wc", "zz", 0),
    ),
    (
        "commit stale epoch",
        [],
        CommitCheckpoint("wc", "a", 1, {("words", 0): 1}),
        Fenced("wc", "words", 0, "a", 1, "a", 2),
    ),
    (
        "commit future epoch",
        [],
        CommitCheckpoint("wc", "a", 9, {("words", 0): 1}),
        Fenced("wc", "words", 0, "a", 9, "a", 2),
    ),
    (
        "commit not owner",
        [],
        CommitCheckpoint("wc", "a", 2, {("words", 1): 1}),
        Fenced("wc", "words", 1, "a", 2, "b", 3),
    ),
    (
        "commit owned + not owned is all-or-nothing",
        [],
        CommitCheckpoint("wc", "a", 2, {("words", 0): 5, ("words", 1): 5}),
        Fenced("wc", "words", 1, "a", 2, "b", 3),
    ),
    (
        "commit by departed worker",
        [DeregisterWorker("a")],
        CommitCheckpoint("wc", "a", 2, {("words", 0): 1}),
        Fenced("wc", "words", 0, "a", 2, "b", 10),
    ),
    (
        "commit on paused job",
        [PauseJob("wc")],
        CommitCheckpoint("wc", "b", 3, {("words", 1): 1}),
        Fenced("wc", "words", 1, "b", 3, None, 10),
    ),
    (
        "commit regression",
        [CommitCheckpoint("wc", "b", 3, {("words", 2): 50})],
        CommitCheckpoint("wc", "b", 3, {("words", 1): 9, ("words", 2): 49}),
        OffsetRegression("wc", "words", 2, 50, 49),
    ),
    ("reset running job", [], ResetOffsets("wc", {("words", 0): 0}), JobNotPaused("wc")),
    ("reset unknown job", [], ResetOffsets("nope", {("words", 0): 0}), UnknownJob("nope")),
    (
        "reset unknown partition",
        [PauseJob("wc")],
        ResetOffsets("wc", {("words", 7): 0}),
        UnknownPartition("wc", "words", 7),
    ),
    (
        "reset negative",
        [PauseJob("wc")],
        ResetOffsets("wc", {("words", 0): -3}),
        InvalidCommand("offset for words[0] must be an integer >= 0, got -3"),
    ),
    (
        "reset nothing",
        [PauseJob("wc")],
        ResetOffsets("wc", {}),
        InvalidCommand("offsets must name at least one partition"),
    ),
]


@pytest.mark.parametrize(
    ("setup", "cmd", "expected"), [s[1:] for s in ERRORS], ids=[s[0] for s in ERRORS]
)
def test_errors_are_values_and_change_nothing(
    setup: list[Command], cmd: Command, expected: Result
) -> None:
    m, result, before = run(setup, cmd)
    assert result == expected
    assert unchanged(m, before)


# ---- effects of successful commands ------------------------------------------------------


def test_pause_revokes_everything_with_a_new_epoch_and_resume_reassigns_newer() -> None:
    m, _, _ = run([], PauseJob("wc"))
    assert m.assignment("a") == m.assignment("b") == []
    assert {(p.owner, p.epoch) for p in m.offsets("wc") or []} == {(None, 10)}
    m.apply_command(ResumeJob("wc"), 11)
    assert {p.epoch for p in m.offsets("wc") or []} == {11}
    assert sorted(len(m.assignment(w)) for w in "ab") == [3, 3]


def test_reset_offsets_are_what_the_next_owner_resumes_from() -> None:
    m, _, _ = run(
        [CommitCheckpoint("wc", "b", B_EPOCH, {("words", 1): 10}), PauseJob("wc")],
        ResetOffsets("wc", {("words", 1): 2}),
    )
    m.apply_command(ResumeJob("wc"), 20)
    resume = {(p.topic, p.partition): p.offset for w in "ab" for p in m.assignment(w)}
    assert resume[("words", 1)] == 2
    assert resume[("words", 2)] is None


def test_commit_records_offsets_and_reads_show_them() -> None:
    m, _, _ = run([], CommitCheckpoint("wc", "a", A_EPOCH, {("clicks", 1): 7}))
    assert PartitionStatus("clicks", 1, 7, "a", A_EPOCH) in (m.offsets("wc") or [])
    assert AssignedPartition("wc", "clicks", 1, A_EPOCH, 7) in m.assignment("a")


def test_grown_partitions_are_assigned_under_the_new_slot_and_spec_follows() -> None:
    m, _, _ = run([], UpdatePartitions("wc", "words", 6))
    info = m.job("wc")
    assert info is not None
    assert info.spec.sources == (SourceSpec("clicks", 2), SourceSpec("words", 6))
    new = [p for p in m.offsets("wc") or [] if p.topic == "words" and p.partition >= 4]
    assert [(p.partition, p.owner, p.epoch) for p in new] == [(4, "a", 10), (5, "b", 10)]
    assert sorted(len(m.assignment(w)) for w in "ab") == [4, 4]


def test_deregister_moves_partitions_to_survivors_with_new_epoch() -> None:
    m, _, _ = run([], DeregisterWorker("a"))
    assert [(p.topic, p.partition, p.epoch) for p in m.assignment("b")] == [
        ("clicks", 0, 10),
        ("clicks", 1, 10),
        ("words", 0, 10),
        ("words", 1, 3),
        ("words", 2, 3),
        ("words", 3, 3),
    ]


def test_cancel_forgets_offsets_and_a_resubmitted_job_starts_fresh_with_higher_epochs() -> None:
    m, _, _ = run(
        [CommitCheckpoint("wc", "a", A_EPOCH, {("words", 0): 99}), CancelJob("wc")],
        SubmitJob(spec()),
    )
    statuses = m.offsets("wc") or []
    assert {p.offset for p in statuses} == {None}
    assert min(p.epoch for p in statuses) == 12


def test_capacity_limits_ownership_and_jobs_are_served_in_name_order() -> None:
    m = MetadataMachine()
    m.apply_command(RegisterWorker("a", 3), 1)
    m.apply_command(SubmitJob(spec("b-job", sources=(SourceSpec("t", 2),))), 2)
    m.apply_command(SubmitJob(spec("a-job", sources=(SourceSpec("t", 2),))), 3)
    # a-job comes first by name, so it takes 2 of a's 3 slots and evicts one b-job partition.
    assert [(p.job, p.partition) for p in m.assignment("a")] == [
        ("a-job", 0),
        ("a-job", 1),
        ("b-job", 0),
    ]
    assert m.status().unassigned_partitions == 1


def test_capacity_zero_drains_a_worker() -> None:
    m, result, _ = run([], RegisterWorker("a", 0))
    assert result == WorkerRegistered("a", 0, 2)
    assert m.assignment("a") == []
    assert len(m.assignment("b")) == 6


def test_re_registering_with_same_capacity_changes_no_epoch() -> None:
    m, _, before = run([], RegisterWorker("a", 100))
    assert unchanged(m, before)


def test_workers_and_status_reads() -> None:
    m = base()
    assert [(w.worker_id, w.capacity, w.registered_at, w.assigned) for w in m.workers()] == [
        ("a", 100, 2, 3),
        ("b", 100, 3, 3),
    ]
    info = m.worker("a")
    assert info is not None and info.assigned == 3
    assert m.worker("zz") is None
    s = m.status()
    assert (s.applied_slot, s.last_epoch, s.jobs, s.workers, s.partitions) == (3, 3, 1, 2, 6)
    assert (s.assigned_partitions, s.unassigned_partitions, s.paused_jobs) == (6, 0, 0)
    assert m.job("nope") is None and m.offsets("nope") is None
    assert [j.spec.name for j in m.jobs()] == ["wc"]


def test_no_workers_means_nothing_assigned() -> None:
    m = MetadataMachine()
    m.apply_command(SubmitJob(spec()), 1)
    assert {(p.owner, p.epoch) for p in m.offsets("wc") or []} == {(None, 0)}


def test_batched_commands_in_one_slot_still_get_strictly_growing_epochs() -> None:
    """If the log applies several commands under one slot, fencing tokens never repeat."""
    m = MetadataMachine()
    m.apply_command(SubmitJob(spec()), 5)
    m.apply_command(RegisterWorker("a", 100), 6)
    m.apply_command(ExpireWorker("a"), 6)
    m.apply_command(RegisterWorker("a", 100), 6)
    assert {p.epoch for p in m.assignment("a")} == {8}
