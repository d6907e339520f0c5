"""The per-partition commit protocol of each guarantee (docs/architecture.md, sec. 4).

One `PartitionCommit` per owned partition. The worker feeds it events - a batch was processed,
outputs were flushed, state was applied, the transaction committed, a checkpoint was accepted
or fenced, a step failed - and runs the effects it returns. The order of the steps that make
a batch durable lives here and only here:

at-least-once   BatchProcessed -> Produce, Flush -> (OutputsFlushed) -> ApplyState ->
                (StateApplied) position advances -> CheckpointDue -> CommitCheckpoint.
                State only after outputs are durable, the checkpoint only after state: a crash
                replays from the agreed offset, state is never applied twice (the store's
                applied offset guards it), the sink may see duplicates.

exactly-once    BatchProcessed gathers batches into a group (bounded in records and age,
                `GroupPolicy`) committed as one transaction. The group's first batch opens the
                partition's transaction (BeginTxn, with its outputs) and every later batch
                streams its outputs into it (ProduceInTxn), so outputs are not held in memory
                and reach the broker early. Closing the group: ApplyState (Redis script: epoch
                check, undo images) -> [Prepare, for two-phase sinks] -> CommitTxn (offsets in
                the transaction: THE COMMIT POINT) -> (TxnCommitted) position advances ->
                [Publish] -> CheckpointDue -> CommitCheckpoint. One group in flight per
                partition (a producer has one transaction at a time); the next one is buffered
                meanwhile, up to `max_records`, and opens its transaction with everything
                buffered once the previous one committed.

Effects returned by one call run in the order given, and the first that fails stops the rest
(the shell then reports `Failed`). The shell may run a suffix of them on a commit thread (the
exactly-once group after BeginTxn), as long as it keeps that order and reports the outcomes
in order.

Faults. `Failed` at any step - transient or fenced - drops the partition with everything held
here for it (open group, group in flight, unflushed batches) and returns `Drop`: the worker
takes the partition over again, and the takeover (`pipeline.commit.takeover`) reconciles from
what is durable, so nothing continues from memory a half-finished step may have made stale.
A failed checkpoint (`CheckpointFailed`) changes neither Kafka nor Redis: it is simply retried
on the next interval. After a drop every event is ignored.

Seams for other sinks and for state restore (docs/architecture.md, sec. 4, "Extending"):
`two_phase=True` adds Prepare (after state, before the commit point) and Publish (after it);
changelog records are ordinary outputs of `BatchResult`, so they ride in the same produce or
transaction as the outputs and become durable before state is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from pipeline.executor.records import BatchResult

__all__ = [
    "ApplyState",
    "BatchProcessed",
    "BeginTxn",
    "CheckpointAccepted",
    "CheckpointDue",
    "CheckpointFailed",
    "CheckpointFenced",
    "CommitCheckpoint",
    "CommitTxn",
    "Drop",
    "Effect",
    "Event",
    "Failed",
    "Flush",
    "GroupPolicy",
    "Guarantee",
    "OutputsFlushed",
    "PartitionCommit",
    "Prepare",
    "Prepared",
    "Produce",
    "ProduceInTxn",
    "Publish",
    "StateApplied",
    "Step",
    "Tick",
    "TxnCommitted",
]


class Guarantee(StrEnum):
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class Step(StrEnum):
    """Where a fault happened, for logs and for the scenario tables of the tests."""

    PROCESS = "process"  # reading state while building the batch
    PRODUCE = "produce"
    FLUSH = "flush"
    BEGIN_TXN = "begin_txn"
    APPLY_STATE = "apply_state"
    PREPARE = "prepare"
    COMMIT_TXN = "commit_txn"
    PUBLISH = "publish"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class GroupPolicy:
    """exactly-once: a transaction costs a few broker round trips whatever its size, so
    batches are grouped; a group commits at `records` input records or after `seconds`, or
    once its partition goes quiet, and grows up to `max_records` while the previous group of
    the partition still commits (bench/pipeline.py measures the effect)."""

    records: int = 20_000
    seconds: float = 0.2
    max_records: int = 100_000


# ---------------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class BatchProcessed:
    """The executor turned input up to `end` (exclusive) into `result`; `now` is the shell's
    monotonic clock (this module reads none)."""

    result: BatchResult
    end: int
    records: int
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Tick:
    """Once per poll round: lets an old or quiet group commit; `force` commits it now (shutdown)."""

    now: float
    force: bool = False


@dataclass(frozen=True, slots=True)
class OutputsFlushed:
    """at-least-once: every output produced so far is acknowledged by Kafka."""


@dataclass(frozen=True, slots=True)
class StateApplied:
    end: int


@dataclass(frozen=True, slots=True)
class Prepared:
    end: int


@dataclass(frozen=True, slots=True)
class TxnCommitted:
    end: int


@dataclass(frozen=True, slots=True)
class CheckpointDue:
    """The worker's checkpoint interval elapsed."""


@dataclass(frozen=True, slots=True)
class CheckpointAccepted:
    offset: int


@dataclass(frozen=True, slots=True)
class CheckpointFenced:
    offset: int


@dataclass(frozen=True, slots=True)
class CheckpointFailed:
    offset: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A step failed. `fenced`: refused because another owner exists (quiet drop, no retry
    unless a later heartbeat still assigns the partition); otherwise transient (stall, retake
    with back-off)."""

    step: Step
    reason: str
    fenced: bool = False


Event = (
    BatchProcessed | Tick | OutputsFlushed | StateApplied | Prepared | TxnCommitted
    | CheckpointDue | CheckpointAccepted | CheckpointFenced | CheckpointFailed | Failed
)  # fmt: skip


# --------------------------------------------------------------------------------- effects
@dataclass(frozen=True, slots=True)
class Produce:
    """at-least-once: hand outputs and dead letters to the shared producer."""

    result: BatchResult
    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Flush:
    """at-least-once: wait until everything produced is acknowledged; the shell may run one
    flush for every partition that asked in a round, then report `OutputsFlushed` to each."""

    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ApplyState:
    """Apply state and view writes and set the applied offset to `end`, guarded by the epoch
    (and, exactly-once, keeping undo images of what it overwrites)."""

    state_writes: dict[str, bytes | None]
    view_writes: dict[str, bytes | None]
    end: int
    background: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class BeginTxn:
    """exactly-once: open the partition's transaction and produce the group's outputs and dead
    letters into it. Cheap C work: the shell runs it on its main thread."""

    result: BatchResult
    end: int
    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class ProduceInTxn:
    """exactly-once: produce a batch's outputs and dead letters into the open transaction."""

    result: BatchResult
    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Prepare:
    """Two-phase sinks: write this group's part durably but invisibly, named by `end`."""

    end: int
    background: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class CommitTxn:
    """`send_offsets_to_transaction(end)` and commit: the commit point of exactly-once."""

    end: int
    background: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Publish:
    """Two-phase sinks: make the part prepared for `end` visible (its commit point passed)."""

    end: int
    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class CommitCheckpoint:
    """`CommitCheckpoint` through the coordinators at this partition's epoch; the shell may
    send the checkpoints of many partitions in one request."""

    offset: int
    background: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Drop:
    """Stop touching the partition now and forget what memory held for it. Not fenced: stall
    it and take it over again with back-off (the takeover reconciles). Fenced: quietly, and
    retake only if a heartbeat answered after now still assigns it. `agreed` is the highest
    checkpoint known agreed."""

    step: Step
    reason: str
    fenced: bool
    agreed: int | None
    background: ClassVar[bool] = False


Effect = (
    Produce | Flush | ApplyState | BeginTxn | ProduceInTxn | Prepare | CommitTxn | Publish
    | CommitCheckpoint | Drop
)  # fmt: skip


# ------------------------------------------------------------------------------- machine
@dataclass
class _Group:
    """exactly-once: consecutive batches committed as one state step and one transaction."""

    started: float
    result: BatchResult = field(default_factory=BatchResult)
    end: int = 0
    records: int = 0
    touched: bool = True

    def add(self, res: BatchResult, end: int, records: int, buffer: bool) -> None:
        """`buffer`: keep the outputs (no transaction open for them yet)."""
        r = self.result
        if buffer:
            r.outputs += res.outputs
            r.dead_letters += res.dead_letters
        r.state_writes.update(res.state_writes)
        r.view_writes.update(res.view_writes)
        r.late_dropped += res.late_dropped
        self.end = end
        self.records += records
        self.touched = True


@dataclass
class _InFlight:
    end: int
    state_writes: dict[str, bytes | None]
    applied: bool = False
    prepared: bool = False


class ProtocolError(AssertionError):
    """The shell reported an event the protocol cannot be in (a bug in the shell)."""


class PartitionCommit:
    """The commit protocol of one partition at one epoch (see the module docstring).

    `position` is the next offset whose effects are durable (what a checkpoint may claim),
    `read_to` the next offset to process, `committed` the last agreed checkpoint."""

    def __init__(
        self,
        guarantee: Guarantee,
        *,
        stateful: bool,
        position: int | None,
        committed: int | None,
        policy: GroupPolicy | None = None,
        two_phase: bool = False,
    ) -> None:
        self.guarantee = guarantee
        self.stateful = stateful
        self.position = position
        self.read_to = position
        self.committed = committed
        self.policy = policy or GroupPolicy()
        self.two_phase = two_phase
        self.dropped: Drop | None = None
        # at-least-once: batches produced, not yet known flushed; then the one being applied.
        self._unflushed: list[tuple[BatchResult, int]] = []
        self._applying: int | None = None
        # exactly-once
        self._group: _Group | None = None
        self._inflight: _InFlight | None = None
        self._start_next = False
        self._txn_open = False  # the open group's transaction is begun, its outputs in it

    # ------------------------------------------------------------------------ queries
    @property
    def exactly_once(self) -> bool:
        return self.guarantee is Guarantee.EXACTLY_ONCE

    @property
    def in_flight(self) -> bool:
        """exactly-once: a group's steps after BeginTxn are running."""
        return self._inflight is not None

    @property
    def idle(self) -> bool:
        """Nothing gathered, produced or in flight: `position` covers everything read."""
        return (
            self._group is None and self._inflight is None and not self._unflushed
            and self._applying is None
        )  # fmt: skip

    def state_layers(self) -> list[dict[str, bytes | None]]:
        """State writes not in the store yet, newest first: what the executor must read
        through (the open group, then the group in flight)."""
        layers = []
        if self._group is not None:
            layers.append(self._group.result.state_writes)
        if self._inflight is not None:
            layers.append(self._inflight.state_writes)
        return layers

    def pending_checkpoint(self) -> int | None:
        """The offset a checkpoint would claim now, if it would move the agreed offset."""
        if self.dropped is not None or self.position is None or self.position == self.committed:
            return None
        return self.position

    # ------------------------------------------------------------------------- events
    def handle(self, ev: Event) -> list[Effect]:
        if self.dropped is not None:
            return []  # dropped: the takeover decides what happens next, not this machine
        if isinstance(ev, Failed):
            return self._drop(ev.step, ev.reason, ev.fenced)
        if isinstance(ev, BatchProcessed):
            if self.read_to is not None and ev.end <= self.read_to:
                raise ProtocolError(f"batch end {ev.end} is not after {self.read_to}")
            self.read_to = ev.end
            return self._eos_batch(ev) if self.exactly_once else self._alo_batch(ev)
        if isinstance(ev, Tick):
            return self._tick(ev) if self.exactly_once else []
        if isinstance(ev, OutputsFlushed):
            return self._alo_flushed()
        if isinstance(ev, StateApplied):
            return self._state_applied(ev.end)
        if isinstance(ev, Prepared):
            fl = self._expect_inflight(ev.end, "Prepared")
            if not self.two_phase or (self.stateful and not fl.applied):
                raise ProtocolError(f"Prepared({ev.end}) out of order")
            fl.prepared = True
            return []
        if isinstance(ev, TxnCommitted):
            return self._txn_committed(ev.end)
        if isinstance(ev, CheckpointDue):
            offset = self.pending_checkpoint()
            return [] if offset is None else [CommitCheckpoint(offset)]
        if isinstance(ev, CheckpointAccepted):
            if self.committed is None or ev.offset > self.committed:
                self.committed = ev.offset
            return []
        if isinstance(ev, CheckpointFenced):
            return self._drop(Step.CHECKPOINT, f"checkpoint {ev.offset} refused", fenced=True)
        if isinstance(ev, CheckpointFailed):
            return []  # nothing changed in Kafka or Redis: the next interval retries
        raise ProtocolError(f"unknown event {ev!r}")

    # ---------------------------------------------------------------- at-least-once
    def _alo_batch(self, ev: BatchProcessed) -> list[Effect]:
        self._unflushed.append((ev.result, ev.end))
        return [Produce(ev.result), Flush()]

    def _alo_flushed(self) -> list[Effect]:
        if self.exactly_once:
            raise ProtocolError("OutputsFlushed under exactly-once")
        if not self._unflushed:
            return []
        batches, self._unflushed = self._unflushed, []
        end = batches[-1][1]
        if not self.stateful:
            self.position = end
            return []
        if len(batches) == 1:
            res = batches[0][0]
            state, views = res.state_writes, res.view_writes
        else:
            state, views = {}, {}
            for res, _ in batches:
                state.update(res.state_writes)
                views.update(res.view_writes)
        self._applying = end
        return [ApplyState(state, views, end)]

    def _state_applied(self, end: int) -> list[Effect]:
        if not self.exactly_once:
            if self._applying != end:
                raise ProtocolError(f"StateApplied({end}) while applying {self._applying}")
            self._applying = None
            self.position = end
            return []
        fl = self._expect_inflight(end, "StateApplied")
        if not self.stateful or fl.applied:
            raise ProtocolError(f"StateApplied({end}) out of order")
        fl.applied = True
        return []

    # ----------------------------------------------------------------- exactly-once
    def _eos_batch(self, ev: BatchProcessed) -> list[Effect]:
        if self._group is None:
            self._group = _Group(started=ev.now)
        g = self._group
        effects: list[Effect] = []
        if self._txn_open:
            effects.append(ProduceInTxn(ev.result))
        elif self._inflight is None:
            effects.append(BeginTxn(ev.result, ev.end))
            self._txn_open = True
        g.add(ev.result, ev.end, ev.records, buffer=not self._txn_open)
        if g.records >= self.policy.records:
            effects += self._start(force=False)
        return effects

    def _tick(self, ev: Tick) -> list[Effect]:
        g = self._group
        if g is None:
            return []
        p = self.policy
        if ev.force or not g.touched or g.records >= p.records or ev.now - g.started >= p.seconds:
            return self._start(force=ev.force)
        g.touched = False  # untouched by the next tick: the partition went quiet, commit
        return []

    def _start(self, force: bool) -> list[Effect]:
        g = self._group
        if g is None:
            return []
        if self._inflight is not None:
            # One group in flight per partition (one undo level in Redis, transactions in
            # order); this one keeps growing, or starts the moment the previous one commits.
            if force or g.records >= self.policy.max_records:
                self._start_next = True
            return []
        self._group, self._start_next = None, False
        res = g.result
        self._inflight = _InFlight(g.end, res.state_writes)
        effects: list[Effect] = [] if self._txn_open else [BeginTxn(res, g.end)]
        self._txn_open = False
        if self.stateful:
            effects.append(ApplyState(res.state_writes, res.view_writes, g.end))
        if self.two_phase:
            effects.append(Prepare(g.end))
        effects.append(CommitTxn(g.end))
        return effects

    def _txn_committed(self, end: int) -> list[Effect]:
        fl = self._expect_inflight(end, "TxnCommitted")
        if (self.stateful and not fl.applied) or (self.two_phase and not fl.prepared):
            raise ProtocolError(f"TxnCommitted({end}) before its earlier steps")
        self._inflight = None
        self.position = end
        effects: list[Effect] = [Publish(end)] if self.two_phase else []
        g = self._group
        if g is not None:
            if self._start_next or g.records >= self.policy.records:
                effects += self._start(force=True)
            else:  # open the buffered group's transaction; later batches stream into it
                effects.append(BeginTxn(g.result, g.end))
                self._txn_open = True
                g.result = BatchResult(state_writes=g.result.state_writes,
                                       view_writes=g.result.view_writes)  # fmt: skip
        return effects

    def _expect_inflight(self, end: int, what: str) -> _InFlight:
        fl = self._inflight
        if fl is None or fl.end != end:
            raise ProtocolError(f"{what}({end}) with {fl and fl.end} in flight")
        return fl

    # ------------------------------------------------------------------------ faults
    def _drop(self, step: Step, reason: str, fenced: bool) -> list[Effect]:
        self._unflushed, self._applying = [], None
        self._group, self._inflight, self._start_next = None, None, False
        self._txn_open = False
        self.dropped = Drop(step, reason, fenced, self.committed)
        return [self.dropped]
