"""`CommitCheckpointBatch` (issue 17): one command per worker per interval carrying all its
(job, epoch) groups, each group applied exactly as a `CommitCheckpoint` of its own would be.

Scenario tables over one small cluster (see ``base``): a batch's result lists each group's
outcome; a fenced or regressed group changes nothing of its own and nothing of the others;
a malformed batch is refused whole; a retried seq is applied once; snapshots carry it all.
"""

from __future__ import annotations

import msgspec
import pytest

from coordinator.commands import (
    CheckpointBatchApplied,
    CheckpointCommitted,
    CheckpointGroup,
    Command,
    CommitCheckpoint,
    CommitCheckpointBatch,
    DeregisterWorker,
    Fenced,
    GroupResult,
    InvalidCommand,
    OffsetRegression,
    RegisterWorker,
    Result,
    SubmitJob,
    UnknownJob,
    UnknownPartition,
    decode_command,
    decode_result,
    encode_command,
)
from coordinator.metadata import MetadataMachine
from coordinator.paxos.application import SessionMachine
from coordinator.paxos.types import Command as Request
from coordinator.protocol import JobSpec, SourceSpec
from coordinator.server.metadata_app import MetadataApp


def spec(name: str, *sources: tuple[str, int]) -> JobSpec:
    return JobSpec(
        name, "examples/wordcount.py:job", tuple(SourceSpec(t, n) for t, n in sources),
        {"kind": "kafka", "topic": "out"},
    )  # fmt: skip


SETUP: list[Command] = [
    SubmitJob(spec("wc", ("clicks", 2), ("words", 4))),
    RegisterWorker("a", 100),
    RegisterWorker("b", 100),
    SubmitJob(spec("ads", ("ads", 2))),
]


def base() -> MetadataMachine:
    """Jobs "wc" (clicks:2, words:4) and "ads" (ads:2), workers a and b.

    a owns wc clicks/0, clicks/1, words/0 at epoch 2 and ads/0 at epoch 4;
    b owns wc words/1..3 at epoch 3 and ads/1 at epoch 4. Offsets: none yet."""
    m = MetadataMachine()
    for slot, cmd in enumerate(SETUP, start=1):
        m.apply_command(cmd, slot)
    return m


def test_base_layout() -> None:
    m = base()
    assert [(p.job, p.topic, p.partition, p.epoch) for p in m.assignment("a")] == [
        ("ads", "ads", 0, 4), ("wc", "clicks", 0, 2), ("wc", "clicks", 1, 2), ("wc", "words", 0, 2),
    ]  # fmt: skip
    assert [(p.job, p.topic, p.partition, p.epoch) for p in m.assignment("b")] == [
        ("ads", "ads", 1, 4), ("wc", "words", 1, 3), ("wc", "words", 2, 3), ("wc", "words", 3, 3),
    ]  # fmt: skip


def g(job: str, epoch: int, **offsets: int) -> CheckpointGroup:
    """A group; keyword ``clicks_1=10`` means (clicks, 1) -> 10."""
    parsed = {(k.rsplit("_", 1)[0], int(k.rsplit("_", 1)[1])): v for k, v in offsets.items()}
    return CheckpointGroup(job, epoch, parsed)


def offsets_of(m: MetadataMachine) -> dict[tuple[str, str, int], int | None]:
    return {
        (job.spec.name, p.topic, p.partition): p.offset
        for job in m.jobs()
        for p in m.offsets(job.spec.name) or []
    }


# The machine answers a committed group with None (kept small in the session table); the
# API expands it (CheckpointBatchApplied.expanded, tested below).
COMMITTED_A2 = COMMITTED_A4 = None

# (id, commands applied after base (slots 10, 11, ...), batch of worker "a",
#  each group's expected result, offsets that must hold afterwards (others stay None))
Offsets = dict[tuple[str, str, int], int]
Answers = list[GroupResult | None]
SCENARIOS: list[tuple[str, list[Command], list[CheckpointGroup], Answers, Offsets]] = [
    ("every group accepted", [],
     [g("wc", 2, clicks_0=10, clicks_1=11, words_0=12), g("ads", 4, ads_0=5)],
     [COMMITTED_A2, COMMITTED_A4],
     {("wc", "clicks", 0): 10, ("wc", "clicks", 1): 11, ("wc", "words", 0): 12,
      ("ads", "ads", 0): 5}),
    ("a stale epoch fences only its group", [],
     [g("wc", 1, clicks_0=10), g("ads", 4, ads_0=5)],
     [Fenced("wc", "clicks", 0, "a", 1, "a", 2), COMMITTED_A4],
     {("ads", "ads", 0): 5}),
    ("a partition another worker owns fences only its group, all of it", [],
     [g("ads", 4, ads_0=5), g("wc", 2, clicks_0=10, words_1=3)],
     [COMMITTED_A4, Fenced("wc", "words", 1, "a", 2, "b", 3)],
     {("ads", "ads", 0): 5}),
    ("an offset regression refuses only its group",
     [CommitCheckpoint("wc", "a", 2, {("clicks", 0): 50})],
     [g("wc", 2, clicks_0=40, clicks_1=7), g("ads", 4, ads_0=5)],
     [OffsetRegression("wc", "clicks", 0, 50, 40), COMMITTED_A4],
     {("wc", "clicks", 0): 50, ("ads", "ads", 0): 5}),
    ("mixed: accepted, fenced, regressed, unknown job, unknown partition",
     [CommitCheckpoint("ads", "a", 4, {("ads", 0): 9})],
     [g("wc", 2, clicks_0=10), g("wc", 3, words_1=1), g("ads", 4, ads_0=8),
      g("gone", 1, x_0=1), g("wc", 2, words_9=1)],
     [COMMITTED_A2, Fenced("wc", "words", 1, "a", 3, "b", 3),
      OffsetRegression("ads", "ads", 0, 9, 8), UnknownJob("gone"),
      UnknownPartition("wc", "words", 9)],
     {("wc", "clicks", 0): 10, ("ads", "ads", 0): 9}),
    ("the same (job, epoch) in two groups: each on its own (the worker's one-by-one retry)",
     [], [g("wc", 2, clicks_0=10), g("wc", 2, words_1=4), g("wc", 2, clicks_1=11)],
     [COMMITTED_A2, Fenced("wc", "words", 1, "a", 2, "b", 3), COMMITTED_A2],
     {("wc", "clicks", 0): 10, ("wc", "clicks", 1): 11}),
    ("after the worker left, every group is fenced", [DeregisterWorker("a")],
     [g("wc", 2, clicks_0=10), g("ads", 4, ads_0=5)],
     [Fenced("wc", "clicks", 0, "a", 2, "b", 10), Fenced("ads", "ads", 0, "a", 4, "b", 10)],
     {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "groups", "expected", "after"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_each_group_is_applied_and_answered_on_its_own(
    setup: list[Command],
    groups: list[CheckpointGroup],
    expected: list[GroupResult | None],
    after: Offsets,
) -> None:
    m = base()
    for slot, cmd in enumerate(setup, start=10):
        m.apply_command(cmd, slot)
    before = offsets_of(m)
    result = m.apply_command(CommitCheckpointBatch("a", tuple(groups)), 20)
    assert result == CheckpointBatchApplied("a", tuple(expected))
    assert offsets_of(m) == {**before, **after}


@pytest.mark.parametrize(
    "groups",
    [
        pytest.param([g("wc", 2, clicks_0=10)], id="one group"),
        pytest.param([g("wc", 2, clicks_0=10, words_0=3), g("ads", 4, ads_0=5)], id="two jobs"),
        pytest.param([g("wc", 1, clicks_0=10), g("ads", 4, ads_0=5)], id="one fenced"),
    ],
)
def test_a_batch_equals_its_groups_committed_one_by_one(groups: list[CheckpointGroup]) -> None:
    batched, single = base(), base()
    result = batched.apply_command(CommitCheckpointBatch("a", tuple(groups)), 20)
    one_by_one = tuple(
        single.apply_command(CommitCheckpoint(x.job, "a", x.epoch, x.offsets), 20 + i)
        for i, x in enumerate(groups)
    )
    assert isinstance(result, CheckpointBatchApplied)
    assert result.expanded(tuple(groups)).results == one_by_one
    assert offsets_of(batched) == offsets_of(single)


# A malformed batch is refused whole: the good group before the bad one is not applied.
MALFORMED: list[tuple[str, tuple[CheckpointGroup, ...], str]] = [
    ("no groups", (), "groups must hold at least one group"),
    ("empty offsets", (g("wc", 2, clicks_0=1), CheckpointGroup("ads", 4, {})),
     "groups[1].offsets must name at least one partition"),
    ("negative offset", (g("wc", 2, clicks_0=1), g("ads", 4, ads_0=-1)),
     "groups[1].offset for ads[0] must be an integer >= 0"),
    ("epoch not an integer", (g("wc", 2, clicks_0=1), CheckpointGroup("ads", "4", {("ads", 0): 1})),  # type: ignore[arg-type]
     "groups[1].epoch must be an integer"),
    ("a partition in two groups", (g("wc", 2, clicks_0=1), g("wc", 3, clicks_0=2)),
     "groups[1] names wc clicks[0] again"),
]  # fmt: skip


@pytest.mark.parametrize(("groups", "reason"), [pytest.param(*s[1:], id=s[0]) for s in MALFORMED])
def test_a_malformed_batch_is_refused_whole_and_changes_nothing(
    groups: tuple[CheckpointGroup, ...], reason: str
) -> None:
    m = base()
    before = offsets_of(m)
    result = m.apply_command(CommitCheckpointBatch("a", groups), 20)
    assert isinstance(result, InvalidCommand)
    assert result.reason.startswith(reason), result.reason
    assert offsets_of(m) == before


def test_undecodable_group_bytes_are_an_invalid_command_not_an_exception() -> None:
    raw = msgspec.msgpack.encode(
        {"type": "commit_checkpoint_batch", "worker_id": "a", "groups": [{"job": "wc"}]}
    )
    result = decode_result(base().apply(raw, 20))
    assert isinstance(result, InvalidCommand) and "epoch" in result.reason


def test_bytes_round_trip_and_equal_batches_encode_equally() -> None:
    cmd = CommitCheckpointBatch(
        "a", (g("wc", 2, words_0=3, clicks_1=2, clicks_0=1), g("ads", 4, ads_0=5))
    )
    assert decode_command(encode_command(cmd)) == cmd
    shuffled = CommitCheckpointBatch(
        "a", (CheckpointGroup("wc", 2, {("clicks", 0): 1, ("clicks", 1): 2, ("words", 0): 3}),
              g("ads", 4, ads_0=5))
    )  # fmt: skip
    assert encode_command(cmd) == encode_command(shuffled)
    m = base()
    result = decode_result(m.apply(encode_command(cmd), 20))
    assert result == CheckpointBatchApplied("a", (COMMITTED_A2, COMMITTED_A4))


def test_expanded_answers_committed_groups_with_their_checkpoint_committed() -> None:
    groups = (g("wc", 2, clicks_0=1), g("ads", 9, ads_0=1))
    fenced = Fenced("ads", "ads", 0, "a", 9, "a", 4)
    applied = CheckpointBatchApplied("a", (None, fenced))
    assert applied.expanded(groups) == CheckpointBatchApplied(
        "a", (CheckpointCommitted("wc", "a", 2), fenced)
    )


def test_the_answer_kept_in_the_session_table_stays_small() -> None:
    """Committed groups cost a byte each in the result every replica keeps per worker in its
    session table (and in every snapshot), not a CheckpointCommitted each."""
    m = base()
    four = (g("wc", 2, clicks_0=1), g("wc", 2, clicks_1=1), g("wc", 2, words_0=1),
            g("ads", 4, ads_0=1))  # fmt: skip
    raw = m.apply(encode_command(CommitCheckpointBatch("a", four)), 20)
    assert decode_result(raw) == CheckpointBatchApplied("a", (None,) * 4)
    one = m.apply(encode_command(CommitCheckpoint("wc", "a", 2, {("clicks", 0): 5})), 21)
    assert isinstance(decode_result(one), CheckpointCommitted)
    assert len(raw) < len(one) + 4


def _session_machine() -> SessionMachine:
    sm = SessionMachine(MetadataApp())
    for seq, cmd in enumerate(SETUP, start=1):
        sm.apply(Request("admin", seq, encode_command(cmd)))
    return sm


def test_a_retried_seq_is_applied_once_and_answered_with_the_first_result() -> None:
    """A client retry (same client id and seq) after the batch was applied, even when the
    state has moved on meanwhile (b took a's partitions), gets the first answer and applies
    nothing again."""
    sm = _session_machine()
    batch = encode_command(
        CommitCheckpointBatch("a", (g("wc", 2, clicks_0=10), g("ads", 4, ads_0=5)))
    )
    first = sm.apply(Request("worker-a", 1, batch))
    assert decode_result(first.result) == CheckpointBatchApplied("a", (COMMITTED_A2, COMMITTED_A4))
    sm.apply(Request("admin", 100, encode_command(DeregisterWorker("a"))))
    retry = sm.apply(Request("worker-a", 1, batch))
    assert retry.duplicate and retry.result == first.result
    app = sm.app
    assert isinstance(app, MetadataApp)
    offsets = offsets_of(app.machine)
    assert offsets[("wc", "clicks", 0)] == 10 and offsets[("ads", "ads", 0)] == 5
    # The next seq is a new command: now fenced, group by group.
    later = encode_command(CommitCheckpointBatch("a", (g("wc", 2, clicks_0=20),)))
    fenced = decode_result(sm.apply(Request("worker-a", 2, later)).result)
    assert isinstance(fenced, CheckpointBatchApplied)
    assert isinstance(fenced.results[0], Fenced)
    assert offsets_of(app.machine)[("wc", "clicks", 0)] == 10


def test_snapshot_after_batches_restores_to_an_equal_state_and_equal_answers() -> None:
    m = base()
    batches: list[Result] = []
    for i, groups in enumerate(
        [
            (g("wc", 2, clicks_0=10, clicks_1=11), g("ads", 4, ads_0=5)),
            (g("wc", 3, words_0=1), g("wc", 2, clicks_1=12)),  # fenced, then accepted
            (g("ads", 4, ads_0=4),),  # regression
        ]
    ):
        batches.append(m.apply_command(CommitCheckpointBatch("a", groups), 20 + i))
    assert [type(r) for r in batches] == [CheckpointBatchApplied] * 3
    restored = MetadataMachine()
    restored.restore(m.snapshot())
    assert restored.snapshot() == m.snapshot()
    assert offsets_of(restored) == offsets_of(m)
    nxt = CommitCheckpointBatch("a", (g("wc", 2, clicks_0=12), g("ads", 4, ads_0=3)))
    assert restored.apply_command(nxt, 30) == m.apply_command(nxt, 30)
    assert restored.snapshot() == m.snapshot()
