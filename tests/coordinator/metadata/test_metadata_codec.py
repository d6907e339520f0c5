"""Wire format of commands and results, and snapshot/restore."""

from __future__ import annotations

import msgspec
import pytest

from coordinator.commands import (
    CancelJob,
    CheckpointCommitted,
    Command,
    CommandDecodeError,
    CommitCheckpoint,
    DeregisterWorker,
    ExpireWorker,
    Fenced,
    InvalidCommand,
    JobSubmitted,
    OffsetRegression,
    PauseJob,
    RegisterWorker,
    ResetOffsets,
    Result,
    ResultDecodeError,
    ResumeJob,
    SubmitJob,
    UpdatePartitions,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from coordinator.metadata import SNAPSHOT_VERSION, MetadataMachine, SnapshotError
from coordinator.protocol import JobSpec, SourceSpec

SPEC = JobSpec(
    name="wc",
    entrypoint="app.jobs:wordcount",
    sources=(SourceSpec("words", 3),),
    sink={"kind": "redis", "view": "counts"},
    guarantee="at-least-once",
    settings={"window": {"size_ms": 1000}, "tags": ["a", 1, None, 2.5, True]},
)

COMMANDS: list[Command] = [
    SubmitJob(SPEC),
    CancelJob("wc"),
    PauseJob("wc"),
    ResumeJob("wc"),
    UpdatePartitions("wc", "words", 8),
    RegisterWorker("w-1", 16),
    DeregisterWorker("w-1"),
    ExpireWorker("w-1"),
    ExpireWorker("w-1", registered_at=42),
    CommitCheckpoint("wc", "w-1", 7, {("words", 2): 10, ("words", 0): 3}),
    ResetOffsets("wc", {("words", 1): 0}),
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip(cmd: Command) -> None:
    assert decode_command(encode_command(cmd)) == cmd


RESULTS: list[Result] = [
    JobSubmitted("wc"),
    CheckpointCommitted("wc", "w", 3),
    Fenced("wc", "t", 0, "w", 3, None, 4),
    OffsetRegression("wc", "t", 0, 10, 9),
    InvalidCommand("because"),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_results_round_trip(result: Result) -> None:
    assert decode_result(encode_result(result)) == result


def test_equal_commands_encode_to_equal_bytes_whatever_the_dict_order() -> None:
    one = CommitCheckpoint("j", "w", 1, {("b", 0): 1, ("a", 1): 2, ("a", 0): 3})
    two = CommitCheckpoint("j", "w", 1, {("a", 0): 3, ("a", 1): 2, ("b", 0): 1})
    assert encode_command(one) == encode_command(two)


def raw(obj: object) -> bytes:
    return msgspec.msgpack.encode(obj)


@pytest.mark.parametrize(
    ("data", "names"),
    [
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(b"\xc1", "invalid", id="not msgpack"),
        pytest.param(raw([1, 2]), "Expected `object`", id="not a map"),
        pytest.param(raw({"name": "x"}), "`type`", id="no type tag"),
        pytest.param(raw({"type": "drop_tables"}), "'drop_tables'", id="unknown type"),
        pytest.param(raw({"type": "cancel_job"}), "`name`", id="missing field"),
        pytest.param(raw({"type": "cancel_job", "name": 3}), "$.name", id="wrong type"),
        pytest.param(
            raw({"type": "cancel_job", "name": "x", "force": True}), "`force`", id="unknown field"
        ),
        pytest.param(
            raw({"type": "register_worker", "worker_id": "w", "capacity": 1.5}),
            "$.capacity",
            id="float capacity",
        ),
        pytest.param(
            raw(
                {
                    "type": "commit_checkpoint",
                    "job": "j",
                    "worker_id": "w",
                    "epoch": 1,
                    "offsets": {"t": 1},
                }
            ),
            "$.offsets",
            id="offsets key not (topic, partition)",
        ),
        pytest.param(
            raw({"type": "submit_job", "spec": {"name": "x"}}), "`entrypoint`", id="spec missing"
        ),
        pytest.param(
            raw(
                {
                    "type": "submit_job",
                    "spec": {
                        "name": "x",
                        "entrypoint": "m:a",
                        "sources": [],
                        "sink": {"k": 1},
                        "guarantee": "at-most-once",
                    },
                }
            ),
            "$.spec.guarantee",
            id="bad guarantee literal",
        ),
    ],
)
def test_malformed_commands_are_rejected_naming_the_problem(data: bytes, names: str) -> None:
    with pytest.raises(CommandDecodeError, match="malformed command") as info:
        decode_command(data)
    assert names in str(info.value)


def test_apply_turns_undecodable_bytes_into_an_invalid_command_result() -> None:
    m = MetadataMachine()
    m.apply(encode_command(SubmitJob(SPEC)), 1)
    before = m.offsets("wc")
    result = decode_result(m.apply(raw({"type": "cancel_job"}), 2))
    assert isinstance(result, InvalidCommand)
    assert "`name`" in result.reason
    assert m.offsets("wc") == before
    assert m.applied_slot == 2


def test_malformed_result_bytes_raise_a_clear_error() -> None:
    with pytest.raises(ResultDecodeError, match="malformed result"):
        decode_result(b"\x00")


# ---- snapshots ---------------------------------------------------------------------------


def busy_machine() -> MetadataMachine:
    m = MetadataMachine()
    history: list[Command] = [
        SubmitJob(SPEC),
        RegisterWorker("a", 5),
        RegisterWorker("b", 5),
        CommitCheckpoint("wc", "a", 2, {("words", 0): 4}),
        PauseJob("wc"),
    ]
    for slot, cmd in enumerate(history, start=1):
        m.apply(encode_command(cmd), slot)
    return m


def test_snapshot_restore_round_trips_exactly() -> None:
    m = busy_machine()
    other = MetadataMachine()
    other.restore(m.snapshot())
    assert other.snapshot() == m.snapshot()
    assert other.jobs() == m.jobs()
    assert other.offsets("wc") == m.offsets("wc")
    assert other.workers() == m.workers()
    assert other.status() == m.status()


def test_empty_machine_snapshot_round_trips() -> None:
    other = MetadataMachine()
    other.restore(MetadataMachine().snapshot())
    assert other.snapshot() == MetadataMachine().snapshot()


def _tampered(mutate: str) -> bytes:
    state = msgspec.msgpack.decode(busy_machine().snapshot())
    if mutate == "version":
        state["version"] = SNAPSHOT_VERSION + 1
    elif mutate == "partitions":
        state["jobs"]["wc"]["partitions"]["words"].pop()
    elif mutate == "name":
        state["jobs"]["wc"]["spec"]["name"] = "other"
    elif mutate == "type":
        state["last_epoch"] = "many"
    return msgspec.msgpack.encode(state)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"\xc1", "malformed snapshot", id="garbage"),
        pytest.param(_tampered("version"), "not supported", id="future version"),
        pytest.param(_tampered("partitions"), "disagrees with its spec", id="partition count"),
        pytest.param(_tampered("name"), "disagrees with its spec", id="job name"),
        pytest.param(_tampered("type"), "$.last_epoch", id="wrong type"),
    ],
)
def test_bad_snapshots_are_refused_and_leave_state_alone(data: bytes, message: str) -> None:
    m = busy_machine()
    before = m.snapshot()
    with pytest.raises(SnapshotError) as info:
        m.restore(data)
    assert message in str(info.value)
    assert m.snapshot() == before
