"""A crash or a fault at every step of the commit protocol, then a takeover, ends where one
failure-free run ends (pipeline/commit/protocol.py and takeover.py together).

The durable world is modelled in memory, with the semantics the worker relies on: Kafka
outputs become visible when flushed (at-least-once) or when their transaction commits
(exactly-once, which also stores the consumed offset K atomically); an open transaction is
aborted by the next owner's fence; Redis applies state with the applied offset R and (exactly-
once) one level of undo images; the coordinators hold the agreed offset A. A keyed count runs
over 20 records. For every effect index i of the failure-free run, a run is made that crashes
(memory lost) or faults (the machine is told and drops the partition) just before or just
after effect i, takes the partition over with `reconcile`, and finishes. Exactly-once: the
visible outputs and the state equal the failure-free run's, exactly. At-least-once: the same
state, every expected output visible, duplicates only of expected outputs.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

import pytest

from pipeline.commit.protocol import (
    ApplyState,
    BatchProcessed,
    BeginTxn,
    CheckpointAccepted,
    CheckpointDue,
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
    Publish,
    StateApplied,
    Step,
    Tick,
    TxnCommitted,
)
from pipeline.commit.takeover import Durable, reconcile
from pipeline.executor.records import BatchResult, OutRecord

KEYS = "abcabbcaacbbacabcbaa"  # 20 input records, offsets 0..19
BATCH = 3
POLICY = GroupPolicy(records=6, seconds=0.25, max_records=12)


class Crash(Exception):
    pass


@dataclass
class World:
    """What survives a crash."""

    visible: list[bytes] = field(default_factory=list)
    kafka: int | None = None  # K
    agreed: int | None = None  # A
    state: dict[str, bytes | None] = field(default_factory=dict)
    applied: int | None = None  # R
    undo: tuple[int | None, dict[str, bytes | None]] | None = None
    published: list[int] = field(default_factory=list)  # two-phase sink: published ends
    prepared: list[int] = field(default_factory=list)
    # Lost on a crash or a drop:
    buffered: list[bytes] = field(default_factory=list)
    txn: list[bytes] | None = None


STEP_OF = {Produce: Step.PRODUCE, Flush: Step.FLUSH, ApplyState: Step.APPLY_STATE,
           BeginTxn: Step.BEGIN_TXN, ProduceInTxn: Step.PRODUCE, Prepare: Step.PREPARE,
           CommitTxn: Step.COMMIT_TXN,
           Publish: Step.PUBLISH, CommitCheckpoint: Step.CHECKPOINT}  # fmt: skip


class Shell:
    """Runs the protocol's effects against the world, injecting one failure."""

    def __init__(self, g: Guarantee, world: World, fail_at: int, mode: str, when: str) -> None:
        self.g, self.w = g, world
        self.fail_at, self.mode, self.when = fail_at, mode, when
        self.count = 0  # effects run so far, over the whole run
        self.failures = 0

    def _maybe_fail(self, e: Effect, when: str) -> None:
        if self.failures == 0 and self.count == self.fail_at and when == self.when:
            self.failures += 1
            if self.mode == "crash":
                raise Crash
            raise _Fault(STEP_OF[type(e)])

    def run(self, m: PartitionCommit, effects: list[Effect]) -> None:
        queue = list(effects)
        while queue:
            e = queue.pop(0)
            if isinstance(e, Drop):
                raise _Dropped
            self._maybe_fail(e, "before")
            ev = self._apply(m, e)
            self._maybe_fail(e, "after")
            self.count += 1
            if ev is not None:
                queue += m.handle(ev)

    def _apply(self, m: PartitionCommit, e: Effect) -> Event | None:
        w = self.w
        if isinstance(e, Produce):
            w.buffered += [o.value for o in e.result.outputs]
        elif isinstance(e, Flush):
            w.visible += w.buffered
            w.buffered = []
            return OutputsFlushed()
        elif isinstance(e, ApplyState):
            if self.g is Guarantee.EXACTLY_ONCE:
                w.undo = (w.applied, {k: w.state.get(k) for k in e.state_writes})
            w.state.update(e.state_writes)
            w.applied = e.end
            return StateApplied(e.end)
        elif isinstance(e, BeginTxn):
            assert w.txn is None, "a producer has one transaction at a time"
            w.txn = [o.value for o in e.result.outputs]
        elif isinstance(e, ProduceInTxn):
            assert w.txn is not None, "produced outside a transaction"
            w.txn += [o.value for o in e.result.outputs]
        elif isinstance(e, Prepare):
            w.prepared.append(e.end)
            return Prepared(e.end)
        elif isinstance(e, CommitTxn):
            assert w.txn is not None
            w.visible += w.txn
            w.txn, w.kafka = None, e.end
            return TxnCommitted(e.end)
        elif isinstance(e, Publish):
            w.published.append(e.end)
        elif isinstance(e, CommitCheckpoint):
            w.agreed = max(e.offset, w.agreed or 0)
            return CheckpointAccepted(e.offset)
        return None


class _Fault(Exception):
    def __init__(self, step: Step) -> None:
        self.step = step


class _Dropped(Exception):
    pass


def take_over(g: Guarantee, w: World, two_phase: bool) -> PartitionCommit:
    """The fence aborts the open transaction and loses unflushed outputs; then reconcile."""
    w.txn, w.buffered = None, []
    has_undo = w.undo is not None
    d = Durable(w.kafka, w.agreed, w.applied, has_undo, w.undo[0] if w.undo else None)
    rec = reconcile(g, d, stateful=True)
    assert rec.lost is None, rec.lost
    if rec.checkpoint is not None:
        w.agreed = max(rec.checkpoint, w.agreed or 0)
    if rec.rollback:
        assert w.undo is not None
        w.applied, images = w.undo
        w.state.update(images)
        w.undo = None
    if two_phase and rec.finish_prepared_upto is not None:
        # finish what passed the commit point, discard the rest
        w.published += [e for e in w.prepared if e <= rec.finish_prepared_upto
                        and e not in w.published]  # fmt: skip
        w.prepared = [e for e in w.prepared if e <= rec.finish_prepared_upto]
    return PartitionCommit(g, stateful=True, position=rec.start, committed=w.agreed,
                           policy=POLICY, two_phase=two_phase)  # fmt: skip


def process(m: PartitionCommit, w: World) -> tuple[BatchResult, int, int]:
    """The executor: a keyed count, reading state through the protocol's layers."""
    start = m.read_to or 0
    writes: dict[str, bytes | None] = {}
    outputs = []
    for off in range(start, min(start + BATCH, len(KEYS))):
        k = KEYS[off]
        cur = writes.get(k)
        if cur is None:
            for layer in m.state_layers():
                if k in layer:
                    cur = layer[k]
                    break
            else:
                cur = w.state.get(k)
        n = int(cur or b"0") + 1
        writes[k] = b"%d" % n
        outputs.append(OutRecord("out", k.encode(), f"{k}{n}@{off}".encode()))
    end = min(start + BATCH, len(KEYS))
    return BatchResult(outputs=outputs, state_writes=writes), end, end - start


def run_job(g: Guarantee, fail_at: int, mode: str, when: str, two_phase: bool = False
            ) -> tuple[World, Shell]:  # fmt: skip
    w = World()
    shell = Shell(g, w, fail_at, mode, when)
    now = 0.0
    m = take_over(g, w, two_phase)
    for _ in range(200):
        try:
            if (m.read_to or 0) < len(KEYS):
                result, end, n = process(m, w)
                shell.run(m, m.handle(BatchProcessed(result, end, n, now)))
            now += 0.1
            force = (m.read_to or 0) >= len(KEYS)
            shell.run(m, m.handle(Tick(now, force=force)))
            shell.run(m, m.handle(CheckpointDue()))
            if force and m.idle and m.pending_checkpoint() is None:
                return w, shell
        except Crash:
            m = take_over(g, w, two_phase)  # memory lost: a new process takes over
        except _Fault as f:
            with contextlib.suppress(_Dropped):
                shell.run(m, m.handle(Failed(f.step, "injected")))
            assert m.dropped is not None
            m = take_over(g, w, two_phase)  # the worker retakes the stalled partition
    raise AssertionError("the job did not finish")


def baseline(g: Guarantee, two_phase: bool = False) -> tuple[World, int]:
    w, shell = run_job(g, fail_at=-1, mode="crash", when="before", two_phase=two_phase)
    return w, shell.count


def expected_counts() -> dict[str, bytes | None]:
    return {k: b"%d" % n for k, n in Counter(KEYS).items()}


CASES = [(g, mode, when) for g in Guarantee for mode in ("crash", "fault")
         for when in ("before", "after")]  # fmt: skip


@pytest.mark.parametrize(("g", "mode", "when"), CASES,
                         ids=[f"{g.value}-{m}-{w}" for g, m, w in CASES])  # fmt: skip
def test_a_failure_at_every_step_ends_like_a_failure_free_run(
    g: Guarantee, mode: str, when: str
) -> None:
    clean, steps = baseline(g)
    assert clean.state == expected_counts()
    assert len(clean.visible) == len(KEYS) and len(set(clean.visible)) == len(KEYS)
    assert steps > 15  # the table below covers many steps, not a handful
    for i in range(steps):
        w, shell = run_job(g, i, mode, when)
        assert shell.failures == 1, f"step {i}: no failure injected"
        assert w.state == clean.state, f"{mode} {when} effect {i}: state differs"
        assert w.agreed == len(KEYS)
        if g is Guarantee.EXACTLY_ONCE:
            assert Counter(w.visible) == Counter(clean.visible), f"{mode} {when} effect {i}"
        else:
            assert set(w.visible) == set(clean.visible), f"{mode} {when} effect {i}"


def test_two_phase_sink_publishes_each_committed_part_once_at_any_crash() -> None:
    clean, steps = baseline(Guarantee.EXACTLY_ONCE, two_phase=True)
    assert clean.published and clean.published == sorted(set(clean.published))
    for i in range(steps):
        for when in ("before", "after"):
            w, _ = run_job(Guarantee.EXACTLY_ONCE, i, "crash", when, two_phase=True)
            assert sorted(w.published) == sorted(set(w.published)), f"effect {i}: twice"
            assert max(w.published) == len(KEYS)
            assert all(e <= (w.kafka or 0) for e in w.published), "published uncommitted"
            assert Counter(w.visible) == Counter(clean.visible)


def test_reconcile_refuses_to_guess_when_redis_lost_state() -> None:
    behind = reconcile(Guarantee.EXACTLY_ONCE, Durable(kafka=10, agreed=10, applied=4),
                       stateful=True)  # fmt: skip
    assert behind.lost is not None and "behind" in behind.lost
    far_ahead = reconcile(Guarantee.EXACTLY_ONCE,
                          Durable(kafka=10, agreed=10, applied=30, has_undo=True, undo_base=20),
                          stateful=True)  # fmt: skip
    assert far_ahead.lost is not None and "ahead" in far_ahead.lost


@pytest.mark.parametrize(
    ("d", "start", "checkpoint", "rollback"),
    [
        (Durable(kafka=None, agreed=None, applied=None), None, None, False),  # fresh
        (Durable(kafka=12, agreed=6, applied=12), 12, 12, False),  # checkpoint lagged
        (Durable(kafka=12, agreed=12, applied=12), 12, 12, False),  # ownership proof
        (Durable(kafka=6, agreed=6, applied=12, has_undo=True, undo_base=6), 6, 6, True),
        (Durable(kafka=None, agreed=None, applied=6, has_undo=True, undo_base=None), None,
         None, True),  # first transaction never committed
    ],
)  # fmt: skip
def test_reconcile_exactly_once_table(
    d: Durable, start: int | None, checkpoint: int | None, rollback: bool
) -> None:
    rec = reconcile(Guarantee.EXACTLY_ONCE, d, stateful=True)
    assert (rec.start, rec.checkpoint, rec.rollback, rec.lost) == (
        start, checkpoint, rollback, None)  # fmt: skip


def test_reconcile_at_least_once_resumes_after_applied_state() -> None:
    rec = reconcile(Guarantee.AT_LEAST_ONCE, Durable(kafka=None, agreed=6, applied=9),
                    stateful=True)  # fmt: skip
    assert rec.start == 9 and rec.checkpoint is None
    rec = reconcile(Guarantee.AT_LEAST_ONCE, Durable(kafka=None, agreed=6, applied=9),
                    stateful=False)  # fmt: skip
    assert rec.start == 6
