"""The per-partition commit protocol, event by event (pipeline/commit/protocol.py).

Scenario tables: each row feeds events to a fresh `PartitionCommit` and states the effects it
must answer with, so the order of the steps of each guarantee is specified here, without
Kafka, Redis or coordinators. A fault at every step of both guarantees drops the partition
with nothing kept; the effect of that on what is durable is in test_commit_crashes.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.commit.protocol import (
    ApplyState,
    BatchProcessed,
    BeginTxn,
    CheckpointAccepted,
    CheckpointDue,
    CheckpointFailed,
    CheckpointFenced,
    CommitCheckpoint,
    CommitTxn,
    Drop,
    Effect,
    Event,
    Failed,
    Flush,
    GroupPolicy,
    Guarantee,
    OutputsFlushed,
    PartitionCommit,
    Prepare,
    Prepared,
    Produce,
    ProduceInTxn,
    ProtocolError,
    Publish,
    StateApplied,
    Step,
    Tick,
    TxnCommitted,
)
from pipeline.executor.records import BatchResult, OutRecord

ALO, EOS = Guarantee.AT_LEAST_ONCE, Guarantee.EXACTLY_ONCE


def res(n: int) -> BatchResult:
    return BatchResult(outputs=[OutRecord("out", b"k", b"%d" % n)], state_writes={"k": b"%d" % n})


def kinds(effects: list[Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def machine(g: Guarantee, stateful: bool = True, **kw: Any) -> PartitionCommit:
    kw.setdefault("policy", GroupPolicy(records=10, seconds=0.2, max_records=30))
    return PartitionCommit(g, stateful=stateful, position=0, committed=0, **kw)


def run(m: PartitionCommit, events: list[Event]) -> list[list[str]]:
    return [kinds(m.handle(ev)) for ev in events]


# ------------------------------------------------------------------- at-least-once
ALO_SCENARIOS = [
    # (name, stateful, events, effects per event, position after)
    ("stateful: produce+flush, then state, then position", True,
     [BatchProcessed(res(1), 5, 5), OutputsFlushed(), StateApplied(5)],
     [["Produce", "Flush"], ["ApplyState"], []], 5),
    ("stateless: flushed is durable", False,
     [BatchProcessed(res(1), 5, 5), OutputsFlushed()],
     [["Produce", "Flush"], []], 5),
    ("state is not applied before the flush", True,
     [BatchProcessed(res(1), 5, 5), CheckpointDue()],
     [["Produce", "Flush"], []], 0),
    ("checkpoint only after state", True,
     [BatchProcessed(res(1), 5, 5), OutputsFlushed(), CheckpointDue(), StateApplied(5),
      CheckpointDue()],
     [["Produce", "Flush"], ["ApplyState"], [], [], ["CommitCheckpoint"]], 5),
    ("a flush with nothing pending does nothing", True,
     [OutputsFlushed()], [[]], 0),
]  # fmt: skip


@pytest.mark.parametrize(("name", "stateful", "events", "effects", "position"), ALO_SCENARIOS,
                         ids=[s[0] for s in ALO_SCENARIOS])  # fmt: skip
def test_at_least_once_order(
    name: str, stateful: bool, events: list[Event], effects: list[list[str]], position: int
) -> None:
    m = machine(ALO, stateful)
    assert run(m, events) == effects
    assert m.position == position


def test_at_least_once_applies_state_of_the_flushed_batch_guarded_by_its_end() -> None:
    m = machine(ALO)
    r = res(7)
    assert m.handle(BatchProcessed(r, 12, 12)) == [Produce(r), Flush()]
    assert m.handle(OutputsFlushed()) == [ApplyState(r.state_writes, r.view_writes, 12)]
    assert m.read_to == 12 and m.position == 0
    m.handle(StateApplied(12))
    assert m.handle(CheckpointDue()) == [CommitCheckpoint(12)]
    m.handle(CheckpointAccepted(12))
    assert m.handle(CheckpointDue()) == []  # nothing new to claim
    assert m.idle


# ------------------------------------------------------------------- exactly-once
EOS_SCENARIOS = [
    ("a full group starts at once: begin, state, commit point", True, False,
     [BatchProcessed(res(1), 10, 10)],
     [["BeginTxn", "ApplyState", "CommitTxn"]]),
    ("stateless: no state step", False, False,
     [BatchProcessed(res(1), 10, 10)],
     [["BeginTxn", "CommitTxn"]]),
    ("two-phase sink: prepare before the commit point, publish after", True, True,
     [BatchProcessed(res(1), 10, 10), StateApplied(10), Prepared(10), TxnCommitted(10)],
     [["BeginTxn", "ApplyState", "Prepare", "CommitTxn"], [], [], ["Publish"]]),
    ("a group's first batch opens the transaction, later ones stream into it", True, False,
     [BatchProcessed(res(1), 3, 3, now=1.0), BatchProcessed(res(2), 6, 3, now=1.0)],
     [["BeginTxn"], ["ProduceInTxn"]]),
    ("a small group waits for its age", True, False,
     [BatchProcessed(res(1), 3, 3, now=1.0), Tick(1.1), Tick(1.25)],
     [["BeginTxn"], [], ["ApplyState", "CommitTxn"]]),
    ("a quiet partition commits on the second tick", True, False,
     [BatchProcessed(res(1), 3, 3, now=1.0), Tick(1.01), Tick(1.02)],
     [["BeginTxn"], [], ["ApplyState", "CommitTxn"]]),
    ("force commits now", True, False,
     [BatchProcessed(res(1), 3, 3, now=1.0), Tick(1.0, force=True)],
     [["BeginTxn"], ["ApplyState", "CommitTxn"]]),
    ("while a group commits the next is buffered, then opens its transaction", True, False,
     [BatchProcessed(res(1), 10, 10), BatchProcessed(res(2), 13, 3), StateApplied(10),
      TxnCommitted(10), BatchProcessed(res(3), 16, 3)],
     [["BeginTxn", "ApplyState", "CommitTxn"], [], [], ["BeginTxn"], ["ProduceInTxn"]]),
    ("one group in flight: the next grows, then starts on the commit", True, False,
     [BatchProcessed(res(1), 10, 10), BatchProcessed(res(2), 20, 10), StateApplied(10),
      TxnCommitted(10)],
     [["BeginTxn", "ApplyState", "CommitTxn"], [], [],
      ["BeginTxn", "ApplyState", "CommitTxn"]]),
    ("no checkpoint before the commit point", True, False,
     [BatchProcessed(res(1), 10, 10), StateApplied(10), CheckpointDue(), TxnCommitted(10),
      CheckpointDue()],
     [["BeginTxn", "ApplyState", "CommitTxn"], [], [], [], ["CommitCheckpoint"]]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "stateful", "two_phase", "events", "effects"), EOS_SCENARIOS,
                         ids=[s[0] for s in EOS_SCENARIOS])  # fmt: skip
def test_exactly_once_order(
    name: str, stateful: bool, two_phase: bool, events: list[Event], effects: list[list[str]]
) -> None:
    m = machine(EOS, stateful, two_phase=two_phase)
    assert run(m, events) == effects


def test_exactly_once_group_carries_every_batch_and_the_last_end() -> None:
    m = machine(EOS)
    r1, r2 = res(1), res(2)
    assert m.handle(BatchProcessed(r1, 4, 4, now=0.0)) == [BeginTxn(r1, 4)]
    assert m.handle(BatchProcessed(r2, 9, 5, now=0.0)) == [ProduceInTxn(r2)]
    assert m.state_layers() == [{"k": b"2"}]  # the executor reads through the open group
    eff = m.handle(Tick(0.0, force=True))
    assert eff == [ApplyState({"k": b"2"}, {}, 9), CommitTxn(9)]
    assert m.in_flight and m.position == 0
    m.handle(StateApplied(9))
    m.handle(TxnCommitted(9))
    assert m.position == 9 and m.idle


def test_buffered_outputs_open_the_next_transaction_whole() -> None:
    m = machine(EOS)
    m.handle(BatchProcessed(res(1), 10, 10))
    m.handle(BatchProcessed(res(2), 12, 2))
    m.handle(BatchProcessed(res(3), 14, 2))
    m.handle(StateApplied(10))
    eff = m.handle(TxnCommitted(10))
    assert len(eff) == 1 and isinstance(eff[0], BeginTxn) and eff[0].end == 14
    assert [o.value for o in eff[0].result.outputs] == [b"2", b"3"]
    assert m.handle(Tick(0.0, force=True)) == [ApplyState({"k": b"3"}, {}, 14), CommitTxn(14)]


def test_a_group_in_flight_stays_readable_until_it_commits() -> None:
    m = machine(EOS)
    m.handle(BatchProcessed(res(1), 10, 10))
    m.handle(BatchProcessed(res(2), 12, 2))
    assert m.state_layers() == [{"k": b"2"}, {"k": b"1"}]  # newest first


def test_the_next_group_grows_to_max_then_waits_for_the_commit() -> None:
    m = machine(EOS)
    m.handle(BatchProcessed(res(1), 10, 10))
    for end in range(20, 60, 10):
        assert m.handle(BatchProcessed(res(end), end, 10)) == []
    m.handle(StateApplied(10))
    eff = m.handle(TxnCommitted(10))
    assert kinds(eff) == ["BeginTxn", "ApplyState", "CommitTxn"] and eff[-1] == CommitTxn(50)


# ------------------------------------------------------------- faults at every step
def steps_of(g: Guarantee, two_phase: bool) -> list[tuple[Step, list[Event]]]:
    """Each step of one batch, with the events that lead up to it."""
    b: Event = BatchProcessed(res(1), 10, 10)
    if g is ALO:
        flushed: list[Event] = [b, OutputsFlushed()]
        return [(Step.PROCESS, []), (Step.PRODUCE, [b]), (Step.FLUSH, [b]),
                (Step.APPLY_STATE, flushed),
                (Step.CHECKPOINT, [*flushed, StateApplied(10), CheckpointDue()])]  # fmt: skip
    steps: list[tuple[Step, list[Event]]] = [
        (Step.PROCESS, []), (Step.BEGIN_TXN, [b]), (Step.APPLY_STATE, [b])
    ]  # fmt: skip
    if two_phase:
        steps.append((Step.PREPARE, [b, StateApplied(10)]))
    done: list[Event] = [b, StateApplied(10), *([Prepared(10)] if two_phase else [])]
    steps.append((Step.COMMIT_TXN, done))
    if two_phase:
        steps.append((Step.PUBLISH, [*done, TxnCommitted(10)]))
    steps.append((Step.CHECKPOINT, [*done, TxnCommitted(10), CheckpointDue()]))
    return steps


FAULT_ROWS = [
    (g, tp, step, before, fenced)
    for g, tp in ((ALO, False), (EOS, False), (EOS, True))
    for step, before in steps_of(g, tp)
    for fenced in (False, True)
]


FAULT_IDS = [
    f"{r[0].value}{'-2pc' if r[1] else ''}-{r[2].value}-{'fenced' if r[4] else 'transient'}"
    for r in FAULT_ROWS
]


@pytest.mark.parametrize(("g", "two_phase", "step", "before", "fenced"), FAULT_ROWS,
                         ids=FAULT_IDS)  # fmt: skip
def test_a_fault_at_any_step_drops_the_partition_with_nothing_kept(
    g: Guarantee, two_phase: bool, step: Step, before: list[Event], fenced: bool
) -> None:
    m = machine(g, two_phase=two_phase)
    run(m, before)
    m.handle(BatchProcessed(res(2), 15, 5, now=0.0))  # a second batch gathered meanwhile
    position = m.position
    eff = m.handle(Failed(step, "boom", fenced=fenced))
    assert eff == [Drop(step, "boom", fenced, agreed=0)]
    assert m.state_layers() == [] and m.idle
    assert m.position == position  # never advanced by the failed step
    # Dropped: whatever the shell still reports is ignored; the takeover decides.
    assert run(m, [OutputsFlushed(), CheckpointDue(), Tick(9.0, force=True),
                   BatchProcessed(res(3), 20, 5)]) == [[], [], [], []]  # fmt: skip


def test_a_fenced_checkpoint_drops_quietly_a_failed_one_is_retried() -> None:
    m = machine(EOS, stateful=False)
    run(m, [BatchProcessed(res(1), 10, 10), TxnCommitted(10)])
    assert m.handle(CheckpointDue()) == [CommitCheckpoint(10)]
    assert m.handle(CheckpointFailed(10)) == []
    assert m.handle(CheckpointDue()) == [CommitCheckpoint(10)]  # same offset again
    assert m.handle(CheckpointFenced(10)) == [Drop(Step.CHECKPOINT, "checkpoint 10 refused",
                                                   fenced=True, agreed=0)]  # fmt: skip


def test_the_agreed_offset_never_goes_backwards() -> None:
    m = machine(ALO, stateful=False)
    m.handle(CheckpointAccepted(20))
    m.handle(CheckpointAccepted(10))
    assert m.committed == 20


@pytest.mark.parametrize(
    ("g", "events"),
    [
        (EOS, [TxnCommitted(10)]),  # nothing in flight
        (EOS, [BatchProcessed(res(1), 10, 10), TxnCommitted(10)]),  # before state applied
        (EOS, [BatchProcessed(res(1), 10, 10), StateApplied(9)]),  # another group
        (ALO, [StateApplied(5)]),  # nothing being applied
        (ALO, [BatchProcessed(res(1), 5, 5), BatchProcessed(res(1), 5, 5)]),  # not after
    ],
)
def test_an_event_out_of_order_is_a_bug_in_the_shell(g: Guarantee, events: list[Event]) -> None:
    with pytest.raises(ProtocolError):
        run(machine(g), events)


def test_publish_only_for_two_phase_sinks() -> None:
    m = machine(EOS, two_phase=True)
    run(m, [BatchProcessed(res(1), 10, 10), StateApplied(10), Prepared(10)])
    assert m.handle(TxnCommitted(10)) == [Publish(10)]
    assert Prepare(10).background and not Publish(10).background
