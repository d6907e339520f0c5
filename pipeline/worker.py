"""The worker process: takes its assignment from the coordinators and runs the job's stages
on the partitions it owns (docs/architecture.md, sec. 4).

The order of the steps that make a batch durable, for each guarantee, is NOT here: it is the
pure state machine `pipeline.commit.protocol.PartitionCommit`, one per owned partition. This
module is its I/O shell: it feeds it events (a batch processed, outputs flushed, state applied,
a transaction committed, a checkpoint accepted or fenced, a step failed) and runs the effects it
returns (produce, flush, apply state, begin/commit a transaction, commit a checkpoint, drop the
partition). The exactly-once steps after BeginTxn run on a commit thread, in the order given;
their outcomes are fed back on the main thread. Takeover (`pipeline.eos`, and `_prepare` for
at-least-once) fences the previous owner and reconciles with `pipeline.commit.takeover`.

Faults (docs/architecture.md, sec. 6). A transient fault on a partition - Redis or Kafka not
answering, an aborted transaction, the coordinators without a quorum - never ends the process:
the partition is dropped with everything this worker held in memory for it, marked stalled
(reported in metrics and to the coordinators), and taken over again with capped, jittered
back-off. The takeover reconciles Kafka, Redis and the agreed offset from what is durable, so
no batch continues from in-memory state that a half-finished step may have made stale. A
fenced partition is dropped quietly and taken again only if a heartbeat answered after the
fencing still assigns it. Takeovers run on their own threads, so a dependency that hangs
stalls only the partitions that need it. Only bad configuration or a bug ends the worker.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from coordinator.protocol import AssignedPartition, JobSpec, Progress
from pipeline import changelog, eos, ingest, restore
from pipeline.changelog import changelog_topic
from pipeline.checkpoint import Pending, commit_checkpoints
from pipeline.commit import protocol as cp
from pipeline.commit.takeover import Durable, reconcile
from pipeline.errors import CoordinatorsUnavailable, PipelineError, TransientError
from pipeline.executor.plan import Plan, compile_job
from pipeline.executor.provenance import dedup
from pipeline.executor.records import BatchResult, InRecord, StateAccess
from pipeline.executor.ticks import IdleTimers  # issue 18
from pipeline.files.runner import PartitionFiles, open_partition  # issue 18
from pipeline.kafka.clients import TP, ProducerFenced, Sink, Source, TransactionalSink
from pipeline.lag import readable_end
from pipeline.loading import load_job
from pipeline.metrics import WorkerMetrics
from pipeline.rabbitmq.runner import QueuePublisher, publisher_for  # issue 19
from pipeline.state import MemoryStore, PartitionStore, RedisStore, RedisStores, StateKey
from pipeline.state.redis import StaleEpoch

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger(__name__)

# exactly-once: one transaction per partition covers up to this many input records or this
# much time (bench/pipeline.py measures the effect; a transaction costs ~3 round trips).
EOS_GROUPS = cp.GroupPolicy(records=20_000, seconds=0.2, max_records=100_000)

# Retaking a stalled partition: capped exponential back-off with jitter (attempts of many
# workers and partitions spread out). The cap keeps "resumes within 2 s of the dependency
# coming back": at most 1 s of waiting plus one takeover.
RETRY_BASE = 0.1
RETRY_CAP = 1.0

Key = tuple[str, str, int]  # (job, topic, partition)


@dataclass
class WorkerConfig:
    worker_id: str
    coordinators: list[str]
    token: str
    kafka: str
    redis_url: str
    capacity: int = 1024
    heartbeat_interval: float = 1.0
    commit_interval: float = 1.0
    batch_size: int = 5000
    poll_timeout: float = 0.05
    max_backlog: int = 100_000
    metrics_port: int = 0
    tls_ca: str = ""  # CA file for HTTPS coordinators; "": the system's trust store


@dataclass
class JobRuntime:
    """What a worker holds per job: the compiled plan and the job's consumer. The consumer's
    group is `paxline.{job}` so that exactly-once offsets committed inside transactions are
    found by whichever worker owns a partition next."""

    name: str
    plan: Plan
    spec: JobSpec
    source: Source | ingest.RoutedSource

    # Stage index -> its changelog topic, for every stage that writes state or view (issue 16).
    changelogs: dict[int, str] = field(default_factory=dict)
    group_metadata: Any = None
    # Takeovers read committed offsets on their own threads. librdkafka's `committed()` can
    # hang past its timeout while another thread sits in `consume()` on the same consumer
    # (seen in the issue-13 Redis test), so they ask a second consumer of the same group
    # that is never assigned and never polled.
    offsets: Source | None = None
    # issue 19: opens a partition's RabbitMQ publisher (pipeline/rabbitmq/runner.py)
    publisher: Callable[[], QueuePublisher] | None = None

    @property
    def exactly_once(self) -> bool:
        return self.plan.guarantee == "exactly-once"

    @property
    def view(self) -> str:
        sink = self.spec.sink
        return str(sink.get("view", "")) if sink.get("kind") == "redis" else ""

    @property
    def dead_letter_topic(self) -> str:
        return str(self.spec.sink.get("dead_letter") or self.plan.dead_letter_topic)


@dataclass
class Owned:
    """A partition this worker owns at `epoch`, with its commit protocol. `proto.position` is
    the next offset whose effects are durable, `proto.read_to` the next offset to process,
    `proto.committed` what the coordinators agreed last."""

    job: JobRuntime
    topic: str
    partition: int
    epoch: int
    stage: int
    store: PartitionStore
    proto: cp.PartitionCommit
    txn: eos.PartitionTxn | None = None
    # exactly-once: the steps of the group in flight (after BeginTxn) on a commit thread.
    inflight: Future[list[cp.Event]] | None = None
    # The exception behind the last `Failed` fed to `proto`: its kind names the stall.
    fault: Exception | None = None
    # issue 18: the stage ends in to_files(); its two-phase commit (pipeline/files/runner.py)
    files: PartitionFiles | None = None
    # issue 19: the stage ends in to_rabbitmq(): confirmed inside Produce (rabbitmq/runner.py)
    queue: QueuePublisher | None = None

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    @property
    def position(self) -> int | None:
        return self.proto.position

    @property
    def committed(self) -> int | None:
        return self.proto.committed

    @property
    def read_to(self) -> int | None:
        return self.proto.read_to


class _ChainFailed(Exception):
    """A step of a group's background chain failed; `done` are the outcomes before it."""

    def __init__(self, step: cp.Step, exc: Exception, done: list[cp.Event]) -> None:
        super().__init__(str(exc))
        self.step, self.exc, self.done = step, exc, done


# Faults that stall a partition (retake with back-off) or fence it (quiet drop).
_FENCED = (StaleEpoch, ProducerFenced, eos.NotOwner)
_STEP_FAULTS = (TransientError, *_FENCED)
_STEP_OF: dict[type, cp.Step] = {
    cp.Produce: cp.Step.PRODUCE, cp.Flush: cp.Step.FLUSH, cp.ApplyState: cp.Step.APPLY_STATE,
    cp.BeginTxn: cp.Step.BEGIN_TXN, cp.ProduceInTxn: cp.Step.PRODUCE,
    cp.Prepare: cp.Step.PREPARE, cp.CommitTxn: cp.Step.COMMIT_TXN,
    cp.Publish: cp.Step.PUBLISH, cp.CommitCheckpoint: cp.Step.CHECKPOINT, cp.Drop: cp.Step.PROCESS,
}  # fmt: skip


@dataclass
class WorkerClients:
    """The worker's connections, injected so that tests pass their own (built from the
    config by `WorkerClients.from_config` otherwise)."""

    heartbeat: CoordinatorClient
    coordinators: CoordinatorClient
    stores: RedisStores
    sink: Sink
    transactional: Callable[[str, str], TransactionalSink] = TransactionalSink

    @classmethod
    def from_config(cls, cfg: WorkerConfig) -> WorkerClients:
        ca = cfg.tls_ca or None
        return cls(
            heartbeat=CoordinatorClient(cfg.coordinators, cfg.token, timeout=5, ca=ca),
            coordinators=CoordinatorClient(cfg.coordinators, cfg.token, timeout=10, ca=ca),
            stores=RedisStores(cfg.redis_url),
            sink=Sink(cfg.kafka),
        )


@dataclass
class Stall:
    """A partition this worker should own but does not process right now, and why. `since`
    is wall-clock time, for people ("stalled: Redis unreachable since 12:03:04")."""

    reason: str
    since: float
    epoch: int
    agreed: int | None = None  # the highest agreed offset this worker knew of
    attempts: int = 0
    next_try: float = 0.0
    # Fenced: retake only on an assignment from a heartbeat sent after the fencing.
    after_version: int = 0

    @property
    def fenced(self) -> bool:
        return self.reason == "fenced"


@dataclass
class _Heartbeat:
    lock: threading.Lock = field(default_factory=threading.Lock)
    assignment: list[AssignedPartition] | None = None
    version: int = 0


class Worker:
    def __init__(self, cfg: WorkerConfig, clients: WorkerClients | None = None) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self._hb = _Heartbeat()
        clients = clients or WorkerClients.from_config(cfg)
        self._hb_client = clients.heartbeat
        self._client = clients.coordinators
        self._stores = clients.stores
        self.sink = clients.sink
        self._transactional = clients.transactional
        self._to_flush: list[Owned] = []
        self.jobs: dict[str, JobRuntime] = {}
        self.owned: dict[tuple[str, str, int], Owned] = {}
        self._broken: dict[tuple[str, str, int, int], str] = {}
        self._seen_version = 0
        self._last_commit = time.monotonic()
        self.metrics = WorkerMetrics(cfg.worker_id)
        # Exactly-once transactions of different partitions overlap on these threads; each
        # mostly waits on the broker, with the GIL released.
        self._txn_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="txn")
        # Takeovers wait on dependencies that may hang (a paused Redis, a broker down): their
        # own threads, so that commits of healthy partitions never queue behind them.
        self._take_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="take")
        self._desired: dict[Key, AssignedPartition] = {}
        self._taking: dict[Key, tuple[AssignedPartition, Future[Owned]]] = {}
        self._stalls: dict[Key, Stall] = {}
        # Partitions restoring from their changelog: (since, records read). Written by the
        # takeover threads, read by `_report_progress` (issue 16: restore on the dashboard).
        self._restoring: dict[Key, tuple[float, int]] = {}
        self._ends: dict[Key, int] = {}
        self._rng = random.Random()
        self._progress: list[Progress] = []
        self._idle = IdleTimers()  # issue 18: idle timers (pipeline/executor/ticks.py)

    # ------------------------------------------------------------------------ heartbeat
    def _heartbeat_loop(self) -> None:
        """Runs until stop. A heartbeat thread that died would leave a worker that still
        runs but whose session lapses: its partitions move away and it never gets new ones,
        silently. So any failure of one beat is logged and the next beat tried; `run`
        also stops the worker if this thread ends anyway."""
        while not self.stop_event.is_set():
            try:
                reply = self._hb_client.heartbeat(
                    self.cfg.worker_id, self.cfg.capacity, self._progress
                )
                with self._hb.lock:
                    self._hb.assignment = reply.assignment
                    self._hb.version += 1
            except (CoordinatorUnavailable, RequestRejected) as exc:
                if self.stop_event.is_set():
                    break  # shutting down: the goodbye, not this beat, ends the session
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                if self.stop_event.is_set():
                    break  # shutdown closed the client under this beat: nothing is wrong
                log.exception("heartbeat failed unexpectedly; retrying")
            self.stop_event.wait(self.cfg.heartbeat_interval)

    # ----------------------------------------------------------------------- assignment
    def _job(self, name: str) -> JobRuntime:
        rt = self.jobs.get(name)
        if rt is None:
            spec = self._client.job(name).spec
            job = load_job(spec.entrypoint)
            plan = compile_job(job)
            # Every stage that writes state or the view logs it (issue 16); its changelog
            # topics exist before any partition of the job is taken. Created before the
            # consumers: with the broker down this fails (and is retried with back-off), and
            # an attempt that fails must not leave two consumers behind (each holds librdkafka
            # threads and connections for as long as anything holds the exception).
            # A job submitted with Job(changelog=False) has none (docs/architecture.md sec. 4,
            # "Jobs without a changelog"); a spec from before the setting has one.
            view = spec.sink.get("kind") == "redis" and bool(spec.sink.get("view"))
            logged = spec.settings.get("changelog", True) is not False
            inputs = {s.index: s.topics[0] for s in plan.stages if logged and (s.stateful or view)}
            restore.ensure_changelogs(self.cfg.kafka, name, inputs)
            isolation = "read_committed" if plan.guarantee == "exactly-once" else "read_uncommitted"
            # issue 19: the Kafka consumer, or one that reads stage 0 from RabbitMQ streams
            # (pipeline/ingest.py); offsets and transactions stay the Kafka group's either way
            source = ingest.open_source(job, self.cfg.kafka, f"paxline.{name}", isolation)
            offsets = Source(self.cfg.kafka, group_id=f"paxline.{name}", isolation=isolation)
            rt = JobRuntime(name, plan, spec, source, offsets=offsets)
            rt.changelogs = {n: changelog_topic(name, n) for n in inputs}
            rt.publisher = publisher_for(job)
            self.jobs[name] = rt
            # Read once on this thread; commit threads only pass it to their producer.
            rt.group_metadata = source.group_metadata()
        return rt

    def _reconcile(self, assignment: list[AssignedPartition]) -> None:
        """A new assignment: release what moved, forget stalls of what moved; what is ours
        and not owned yet is taken by `_take_due`."""
        desired = {(a.job, a.topic, a.partition): a for a in assignment}
        self._desired = desired
        moved = [
            o for key, o in self.owned.items()
            if (a := desired.get(key)) is None or a.epoch != o.epoch
        ]  # fmt: skip
        if moved:
            self._revoke(moved)
        for key, st in list(self._stalls.items()):
            a = desired.get(key)
            if a is None or a.epoch != st.epoch:
                del self._stalls[key]

    def _take_due(self) -> None:
        """Start the takeovers that are due: partitions assigned to us, neither owned nor
        being taken, not stopped, and past their back-off. Takeovers are mostly waiting
        (init_transactions fences the previous producer), so they run side by side."""
        now = time.monotonic()
        with self._hb.lock:
            version = self._hb.version
        for key, a in self._desired.items():
            if key in self.owned or key in self._taking or (*key, a.epoch) in self._broken:
                continue
            st = self._stalls.get(key)
            if st is not None and st.epoch == a.epoch:
                if now < st.next_try or version <= st.after_version:
                    continue
                if st.agreed is not None and (a.offset is None or st.agreed > a.offset):
                    # The assignment's offset may trail a checkpoint we committed since.
                    a = AssignedPartition(a.job, a.topic, a.partition, a.epoch, st.agreed)
            try:
                self._job(a.job)  # compile the plan on this thread, once
            except (CoordinatorUnavailable, RequestRejected) as exc:
                self._stall(key, a.epoch, CoordinatorsUnavailable(str(exc)), None)
                continue
            except PipelineError as exc:
                self._stall(key, a.epoch, exc, None)
                continue
            self._taking[key] = (a, self._take_pool.submit(self._prepare, a))

    def _install_ready(self) -> None:
        """Install the takeovers that finished; stall the ones a fault stopped."""
        for key, (a, fut) in list(self._taking.items()):
            if not fut.done():
                continue
            del self._taking[key]
            try:
                o = fut.result()
            except eos.StateLost as exc:
                # Not guessing: this partition stays stopped until an operator acts. With a
                # changelog Redis is restored first, so this is a job without one.
                if not self.jobs[a.job].changelogs:
                    exc = eos.StateLost(f"{exc}; the job has no changelog (changelog=False)")
                    self.metrics.state_lost.labels(a.job).inc()
                self._broken[(*key, a.epoch)] = str(exc)
                self._stalls.pop(key, None)
                log.error("STOPPED %s[%d] of %s: %s", key[1], key[2], key[0], exc)
                continue
            except (StaleEpoch, ProducerFenced, eos.NotOwner) as exc:
                self._stall(key, a.epoch, exc, a.offset)
                continue
            except (TransientError, CoordinatorUnavailable, RequestRejected) as exc:
                self._stall(key, a.epoch, exc, a.offset)
                continue
            current = self._desired.get(key)
            if current is None or current.epoch != a.epoch or key in self.owned:
                if o.txn is not None:  # moved while we took it: the next owner fences us
                    o.txn.close()
                if o.queue is not None:
                    o.queue.close()
                continue
            self._install(o)
            st = self._stalls.pop(key, None)
            if st is not None and not st.fenced:
                log.info("resumed %s[%d] of %s after %.1fs stalled (%s)", key[1], key[2],
                         key[0], time.time() - st.since, st.reason)  # fmt: skip

    def _stall(self, key: Key, epoch: int, exc: Exception, agreed: int | None) -> None:
        """Mark a partition stalled and schedule its next takeover. A fenced partition is
        logged at INFO and waits for a heartbeat sent after now: if it really moved, that
        answer no longer assigns it and nothing is retried."""
        fenced = isinstance(exc, (StaleEpoch, ProducerFenced, eos.NotOwner))
        if fenced:
            reason = "fenced"
        elif isinstance(exc, TransientError):
            reason = exc.reason
        else:
            reason = f"cannot load the job: {exc}"
        st = self._stalls.get(key)
        if st is None or st.epoch != epoch or st.reason != reason:
            since = st.since if st is not None and st.epoch == epoch else time.time()
            st = self._stalls[key] = Stall(reason, since, epoch, agreed)
            if fenced:
                log.info("fenced on %s[%d] of %s: %s; dropped", key[1], key[2], key[0], exc)
            else:
                log.warning("stalled %s[%d] of %s: %s since %s (%s); retrying with back-off",
                            key[1], key[2], key[0], reason,
                            time.strftime("%H:%M:%S", time.localtime(st.since)), exc)  # fmt: skip
        else:
            log.debug("still stalled %s[%d] of %s: %s", key[1], key[2], key[0], exc)
        if agreed is not None and (st.agreed is None or agreed > st.agreed):
            st.agreed = agreed
        st.attempts += 1
        delay = min(RETRY_CAP, RETRY_BASE * 2 ** min(st.attempts, 10))
        st.next_try = time.monotonic() + delay * self._rng.uniform(0.5, 1.0)
        if fenced:
            with self._hb.lock:
                st.after_version = self._hb.version + 1
            self.metrics.fenced.labels(key[0]).inc()
        else:
            self.metrics.faults.labels(reason).inc()

    def _fault(self, o: Owned, exc: Exception, step: cp.Step = cp.Step.PROCESS) -> None:
        """A step of this partition failed (transient) or was refused (fenced): the protocol
        answers with `Drop`, which `_run` carries out."""
        o.fault = exc
        fenced = isinstance(exc, _FENCED)
        self._run(o, o.proto.handle(cp.Failed(step, str(exc), fenced=fenced)))

    def _dropped(self, o: Owned, d: cp.Drop) -> None:
        """Effect `Drop`: stop touching the partition, forget what memory held for it (the
        protocol already did), stall it and take it over again later: the takeover reconciles
        from what is durable."""
        key = (o.job.name, o.topic, o.partition)
        if self.owned.get(key) is not o:
            return
        self._drop(o)
        exc = o.fault or (eos.NotOwner(d.reason) if d.fenced else TransientError(d.reason))
        self._stall(key, o.epoch, exc, d.agreed)

    # ------------------------------------------------------------------ effects (I/O)
    def _feed(self, o: Owned, ev: cp.Event) -> None:
        self._run(o, o.proto.handle(ev))

    def _run(self, o: Owned, effects: list[cp.Effect]) -> None:
        """Run the protocol's effects in order; the first that fails stops the rest and is
        reported as `Failed`. exactly-once: the steps from the first background one on (state,
        commit point) go to a commit thread as one chain."""
        for i, e in enumerate(effects):
            if o.proto.exactly_once and e.background:
                self._submit_chain(o, effects[i:])
                return
            try:
                ev = self._effect(o, e)
            except _STEP_FAULTS as exc:
                self._fault(o, exc, _STEP_OF[type(e)])
                return
            if ev is not None:
                self._feed(o, ev)

    def _effect(self, o: Owned, e: cp.Effect) -> cp.Event | None:
        """One foreground effect; its outcome as an event (None: reported later or none)."""
        if isinstance(e, cp.Produce):
            outputs = e.result.outputs
            if o.queue is not None:  # issue 19: confirmed by RabbitMQ before Flush returns
                outputs = o.queue.send(outputs)
            self.sink.send_all(outputs)
            for dl in e.result.dead_letters:
                self.sink.send_dead_letter(o.job.dead_letter_topic, dl)
        elif isinstance(e, cp.Flush):
            self._to_flush.append(o)  # one flush per round for every partition (`_round`)
        elif isinstance(e, cp.ApplyState):
            if o.files is not None:  # resuming after `end` needs its file output durable
                o.files.close(e.end)
            o.store.apply(e.state_writes, e.view_writes, e.end)
            return cp.StateApplied(e.end)
        elif isinstance(e, cp.BeginTxn):
            assert o.txn is not None
            o.txn.begin(e.result, o.job.dead_letter_topic)
        elif isinstance(e, cp.ProduceInTxn):
            assert o.txn is not None
            o.txn.produce(e.result, o.job.dead_letter_topic)
        elif isinstance(e, cp.CommitCheckpoint):
            pass  # gathered by `commit` through `pending_checkpoint`, many per request
        elif isinstance(e, cp.Drop):
            self._dropped(o, e)
        elif isinstance(e, cp.Publish):
            pass  # files are renamed once a checkpoint covers them (`commit`: files.agreed)
        else:
            raise PipelineError(f"bug: effect {type(e).__name__} has no runner")
        return None

    def _submit_chain(self, o: Owned, effects: list[cp.Effect]) -> None:
        txn, store, metadata, files = o.txn, o.store, o.job.group_metadata, o.files
        assert txn is not None and all(e.background for e in effects)

        def chain() -> list[cp.Event]:
            done: list[cp.Event] = []
            for e in effects:
                try:
                    if isinstance(e, cp.ApplyState):
                        store.apply(e.state_writes, e.view_writes, e.end)  # (a)
                        eos.crash_point("after_a")
                        done.append(cp.StateApplied(e.end))
                    elif isinstance(e, cp.Prepare) and files is not None:
                        files.close(e.end)  # the group's file, before the commit point
                        done.append(cp.Prepared(e.end))
                    elif isinstance(e, cp.CommitTxn):
                        txn.commit(e.end, metadata)  # (b): the commit point
                        eos.crash_point("after_b")
                        done.append(cp.TxnCommitted(e.end))
                    else:
                        raise PipelineError(f"bug: effect {type(e).__name__} has no runner")
                except _STEP_FAULTS as exc:
                    raise _ChainFailed(_STEP_OF[type(e)], exc, done) from exc
            return done

        o.inflight = self._txn_pool.submit(chain)

    def _prepare(self, a: AssignedPartition) -> Owned:
        """Fence the previous owner and find where to resume (thread-safe: no worker state)."""
        rt = self.jobs[a.job]
        stage = rt.plan.stage_for_topic(a.topic)
        key = StateKey(a.job, a.topic, a.partition)
        stateful = rt.plan.stages[stage].stateful or bool(rt.view)
        agreed = a.offset
        if rt.exactly_once:
            taken = eos.take_over(
                kafka=self.cfg.kafka,
                source=rt.offsets or ingest.kafka_of(rt.source),
                stores=self._stores if stateful else None,
                key=key,
                epoch=a.epoch,
                agreed=agreed,
                view=rt.view,
                commit=lambda offset: self._commit_now(a, offset),
                producer_factory=self._transactional,
                restore=self._restorer(rt, stage, key) if stage in rt.changelogs else None,
            )
            files = self._files(rt, stage, a, taken.start)
            proto = cp.PartitionCommit(
                cp.Guarantee.EXACTLY_ONCE, stateful=isinstance(taken.store, RedisStore),
                position=taken.start, committed=taken.agreed if taken.agreed is not None
                else agreed, policy=EOS_GROUPS, two_phase=files is not None,
            )  # fmt: skip
            return Owned(rt, key.topic, key.partition, a.epoch, stage, taken.store, proto,
                         taken.txn, files=files)  # fmt: skip
        ingest.check(rt.source, (a.topic, a.partition))  # issue 19: RabbitMQ queue reachable
        store: PartitionStore = MemoryStore()
        if stateful:
            # The epoch fences a previous owner that has not noticed the move yet: its late
            # state writes are refused instead of counted twice.
            store = epoch_store = self._stores.epoch_store(key, a.epoch, view=rt.view)
            epoch_store.take_over()
        # State may be ahead of the agreed checkpoint (crash after apply, before commit); its
        # outputs were flushed before it was applied, so resume after it (`reconcile`).
        applied = store.applied_offset()
        if stateful and restore.needs_restore(applied, agreed):
            if stage in rt.changelogs:
                applied = self._restorer(rt, stage, key)(epoch_store, agreed)  # Redis lost state
            else:
                # No changelog (Job(changelog=False)): at-least-once goes on from what Redis
                # still has, and says so (log, paxline_worker_state_lost_total).
                self.metrics.state_lost.labels(key.job).inc()
                log.warning("%s[%d] of %s: Redis state is behind the agreed offset %s (applied "
                            "%s) and the job has no changelog: at-least-once continues from "
                            "the state Redis still has; the lost updates are not recounted",
                            key.topic, key.partition, key.job, agreed, applied)  # fmt: skip
        durable = Durable(None, agreed, applied)
        rec = reconcile(cp.Guarantee.AT_LEAST_ONCE, durable, stateful=stateful)
        proto = cp.PartitionCommit(cp.Guarantee.AT_LEAST_ONCE, stateful=stateful,
                                   position=rec.start, committed=agreed)  # fmt: skip
        # issue 19: RabbitMQ down stalls the partition here, named, before anything is read
        queue = None
        if rt.publisher is not None and rt.plan.stages[stage].output == "rabbitmq":
            queue = rt.publisher()
        return Owned(rt, key.topic, key.partition, a.epoch, stage, store, proto,
                     files=self._files(rt, stage, a, rec.start), queue=queue)  # fmt: skip

    @staticmethod
    def _files(
        rt: JobRuntime, stage: int, a: AssignedPartition, start: int | None
    ) -> PartitionFiles | None:
        """issue 18: a stage ending in to_files() finishes the previous owners' files (the
        takeover's resume offset covers exactly the files that must be published)."""
        if rt.plan.stages[stage].output != "files":
            return None
        return open_partition(rt.spec.sink, rt.name, a.topic, a.partition, a.epoch, start)

    def _restorer(
        self, rt: JobRuntime, stage: int, key: StateKey
    ) -> Callable[[restore.RestoreTarget, int | None], int | None]:
        """Rebuild a partition's Redis state from its changelog (`pipeline.restore`); runs on
        a takeover thread, progress in the log and in the restore metrics."""
        job, m = rt.name, self.metrics

        def run(target: restore.RestoreTarget, committed: int | None) -> int | None:
            seen = [0]
            k, since = (job, key.topic, key.partition), time.time()

            def progress(n: int) -> None:
                m.restore_records.labels(job).inc(n - seen[0])
                seen[0] = n
                self._restoring[k] = (since, n)

            self._restoring[k] = (since, 0)
            m.restoring.labels(job).inc()
            m.restores.labels(job).inc()
            try:
                return restore.restore_partition(
                    name=f"{key.topic}[{key.partition}] of {job}",
                    read=restore.reader(self.cfg.kafka, job, stage, key.partition, rt.exactly_once),
                    target=target,
                    committed=committed,
                    exactly_once=rt.exactly_once,
                    progress=progress,
                )
            finally:
                self._restoring.pop(k, None)
                m.restoring.labels(job).dec()

        return run

    def _install(self, o: Owned) -> None:
        self.owned[(o.job.name, o.topic, o.partition)] = o
        o.job.source.assign([(o.topic, o.partition, o.position)])
        log.info("took %s[%d] of %s at epoch %d from offset %s",
                 o.topic, o.partition, o.job.name, o.epoch, o.position)  # fmt: skip

    def _commit_now(self, a: AssignedPartition, offset: int) -> str:
        p = Pending(a.job, a.topic, a.partition, a.epoch, offset)
        out = commit_checkpoints(self._client, self.cfg.worker_id, [p])
        return "ok" if out.committed else "fenced" if out.fenced else "failed"

    def _drop(self, o: Owned) -> None:
        """Stop touching a partition at once (fenced, or handed back for a retake)."""
        if o.inflight is not None:
            with contextlib.suppress(Exception):  # its outcome no longer matters to us
                o.inflight.result()
            o.inflight = None
        o.job.source.unassign([o.tp])
        self.owned.pop((o.job.name, o.topic, o.partition), None)
        if o.txn is not None:
            o.txn.close()
        if o.queue is not None:
            o.queue.close()

    def _settle(self, o: Owned, wait: bool = True) -> bool:
        """Feed the outcome of a partition's in-flight exactly-once chain to its protocol
        (which may start the next group at once); False if the partition was dropped."""
        fut = o.inflight
        if fut is None:
            return True
        if not wait and not fut.done():
            return True
        o.inflight = None
        try:
            events = fut.result()
        except _ChainFailed as failed:
            for ev in failed.done:
                self._feed(o, ev)
            self._fault(o, failed.exc, failed.step)
            return False
        for ev in events:
            self._feed(o, ev)
        return o.proto.dropped is None

    def _flush_groups(self, force: bool = False) -> None:
        """exactly-once: let the protocols start groups that are big or old enough, or whose
        partition went quiet (`Tick`)."""
        now = time.monotonic()
        for o in list(self.owned.values()):
            if o.proto.exactly_once and self._settle(o, wait=False):  # a finished chain first
                self._feed(o, cp.Tick(now, force=force))

    def _revoke(self, partitions: list[Owned]) -> None:
        """Stop, flush and make a final (fenced) commit."""
        for o in partitions:
            self._drop(o)
        try:
            self.sink.flush()
        except TransientError as exc:  # positions only ever cover flushed outputs anyway
            log.warning("flush on release failed: %s", exc)
        final = [p for p in map(self._pending, partitions) if p is not None]
        if final:
            out = commit_checkpoints(self._client, self.cfg.worker_id, final)
            for p in out.fenced:
                self.metrics.fenced.labels(p.job).inc()
        log.info("released %s", ", ".join(f"{o.topic}[{o.partition}]" for o in partitions))

    @staticmethod
    def _pending(o: Owned) -> Pending | None:
        offset = o.proto.pending_checkpoint()
        if offset is not None and o.files is not None:  # never past rows in no closed file
            seal = not o.proto.exactly_once and not o.proto.stateful
            offset = o.files.committable(offset, seal=seal)
            if offset is not None and o.committed is not None and offset <= o.committed:
                offset = None
        if offset is None:
            return None
        return Pending(o.job.name, o.topic, o.partition, o.epoch, offset)

    # ------------------------------------------------------------------------ processing
    def run_once(self) -> int:
        """One poll-process-commit round over every job; returns records consumed."""
        with self.metrics.batch_seconds.time():
            return self._round()

    def _round(self) -> int:
        with self._hb.lock:
            version, assignment = self._hb.version, self._hb.assignment
        if assignment is not None and version != self._seen_version:
            self._seen_version = version
            self._reconcile(assignment)
        self._install_ready()
        self._take_due()
        consumed = 0
        self._to_flush = []
        timeout = self.cfg.poll_timeout / max(1, len(self.jobs))
        for rt in list(self.jobs.values()):
            for (topic, partition), records in rt.source.poll_batch(
                self.cfg.batch_size, timeout
            ).items():
                o = self.owned.get((rt.name, topic, partition))
                if o is None or not self._settle(o, wait=False):
                    continue
                consumed += len(records)
                fresh = _after(records, o.read_to)
                if fresh:
                    try:
                        self._process(o, fresh)
                    except TransientError as exc:  # state read failed: retake, reconcile
                        self._fault(o, exc, cp.Step.PROCESS)
            for (topic, partition), fault in ingest.faults(rt.source).items():
                o = self.owned.get((rt.name, topic, partition))  # issue 19: a queue's fault
                if o is not None:
                    self._fault(o, fault)
        if self._to_flush:
            flushed, self._to_flush = self._to_flush, []
            try:
                self.sink.flush()  # at-least-once: one flush for every partition that asked
            except TransientError as exc:
                for o in flushed:
                    self._fault(o, exc, cp.Step.FLUSH)  # replays from R: duplicates only
            else:
                for o in flushed:
                    self._feed(o, cp.OutputsFlushed())  # -> ApplyState
        # issue 18: a quiet windowed partition gets a tick on its own input (executor/ticks.py)
        idle = ((k, o.job.plan.stages[o.stage].idle_timeout_ms) for k, o in self.owned.items())
        for t in self._idle.due(time.monotonic(), idle):
            with contextlib.suppress(BufferError):  # a lost tick is resent one timeout later
                self.sink.producer.produce(
                    t.topic, t.value, None, partition=t.partition, headers=t.headers
                )
        self._flush_groups()
        self._backpressure()
        if time.monotonic() - self._last_commit >= self.cfg.commit_interval:
            self.commit()
        return consumed

    def _process(self, o: Owned, fresh: list[InRecord]) -> None:
        end = fresh[-1].offset + 1
        state: StateAccess = o.store
        layers = o.proto.state_layers()
        if layers:
            state = eos.Overlay(o.store, layers)
        hw: dict[str, bytes | None] = {}
        if o.stage > 0 and isinstance(o.store, RedisStore):
            fresh, hw = dedup(fresh, state)
        res = o.job.plan.process(o.stage, fresh, state) if fresh else BatchResult()
        res.state_writes.update(hw)
        if fresh:  # issue 18: the watermark and next closing, for the idle timers
            self._idle.observe((o.job.name, o.topic, o.partition), fresh, res, time.monotonic())
        m, job = self.metrics, o.job.name
        m.records_in.labels(job).inc(len(fresh))
        m.records_out.labels(job).inc(len(res.outputs))
        if o.files is not None:  # issue 18: file outputs wait for their file, not Kafka
            o.files.take(res, end)
        log_topic = o.job.changelogs.get(o.stage)
        if log_topic is not None:  # the one point where a stage's changed keys are known
            res.outputs += changelog.records(log_topic, o.partition, res, end)
        m.dead_letters.labels(job).inc(len(res.dead_letters))
        m.late_dropped.labels(job).inc(res.late_dropped)
        self._feed(o, cp.BatchProcessed(res, end, len(fresh), time.monotonic()))

    def _backpressure(self) -> None:
        for rt in self.jobs.values():
            if self.sink.backlog() > self.cfg.max_backlog:
                rt.source.pause(list(rt.source.assigned))
            elif rt.source.paused:
                rt.source.resume(list(rt.source.paused))

    def _report_progress(self) -> None:
        """Per-partition lag for /metrics and for the coordinators (dashboard)."""
        progress: list[Progress] = []
        self.metrics.owned.set(len(self.owned))
        for rt in self.jobs.values():
            ends = rt.source.high_watermarks(list(rt.source.assigned))
            fetched = rt.source.positions(list(ends))
            for (topic, partition), kafka_end in ends.items():
                o = self.owned.get((rt.name, topic, partition))
                if o is None:
                    continue
                # Lag is records left to read, not offsets: markers are no records.
                end = readable_end(kafka_end, o.read_to, fetched.get((topic, partition)))
                position = o.position
                self._ends[(rt.name, topic, partition)] = end
                self.metrics.lag.labels(rt.name, topic, str(partition)).set(end - (position or 0))
                progress.append(Progress(rt.name, topic, partition, position, end))
        self.metrics.stalled.clear()
        counts: dict[tuple[str, str], int] = {}
        restoring = dict(self._restoring)  # a snapshot: takeover threads change it
        progress += changelog.restoring_progress(restoring, self.owned, self._ends)
        for key, st in self._stalls.items():
            if st.fenced or key in self.owned or key in restoring:
                continue
            job, topic, partition = key
            counts[(job, st.reason)] = counts.get((job, st.reason), 0) + 1
            progress.append(Progress(job, topic, partition, st.agreed, self._ends.get(key, 0),
                                     stalled=st.reason, stalled_since=st.since))  # fmt: skip
        for (job, reason), n in counts.items():
            self.metrics.stalled.labels(job, reason).set(n)
        self._progress = progress

    def commit(self) -> None:
        self._last_commit = time.monotonic()
        for owned in list(self.owned.values()):
            self._settle(owned, wait=False)  # finished transactions advance their positions
        self._report_progress()
        pending = [p for p in map(self._pending, self.owned.values()) if p is not None]
        if not pending:
            return
        with self.metrics.checkpoint_seconds.time():
            out = commit_checkpoints(self._client, self.cfg.worker_id, pending)
        outcomes: list[tuple[list[Pending], Callable[[int], cp.Event]]] = [
            (out.committed, cp.CheckpointAccepted), (out.fenced, cp.CheckpointFenced),
            (out.failed, cp.CheckpointFailed),
        ]  # fmt: skip
        for items, event in outcomes:
            for p in items:
                o = self.owned.get((p.job, p.topic, p.partition))
                if o is None or o.epoch != p.epoch:
                    continue
                if event is cp.CheckpointFenced:  # someone else owns it: stop at once
                    o.fault = eos.NotOwner(f"checkpoint at epoch {p.epoch} refused")
                self._feed(o, event(p.offset))
                if event is cp.CheckpointAccepted and o.files is not None:
                    o.files.agreed(p.offset)  # issue 18: publish the files it covers
                if event is cp.CheckpointAccepted:  # issue 19: a queue source acks up to it
                    ingest.agreed(o.job.source, o.tp, p.offset)
        if out.committed:
            eos.crash_point("after_c")

    # ------------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port)
        if threading.current_thread() is threading.main_thread():
            # `kill -USR1 <pid>` prints every thread's stack: what a stalled worker waits on.
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        hb.start()
        log.info("worker %s started (capacity %d)", self.cfg.worker_id, self.cfg.capacity)
        try:
            while not self.stop_event.is_set():
                if not hb.is_alive():
                    raise PipelineError("the heartbeat thread stopped; exiting so that a "
                                        "supervisor restarts the worker")  # fmt: skip
                try:
                    self.run_once()
                except TransientError as exc:
                    # Partition steps handle their own faults; one that escapes a round still
                    # must not end the worker. What the round held is suspect: retake all.
                    log.warning("round failed (%s); taking every partition over again", exc)
                    for o in list(self.owned.values()):
                        self._fault(o, exc)
                if not self.owned:
                    # Nothing assigned: poll_batch returns at once, so wait here instead of
                    # spinning a core until the next heartbeat brings work.
                    self.stop_event.wait(self.cfg.poll_timeout)
        except PipelineError:
            raise
        except Exception as exc:
            log.exception("unexpected error")
            raise PipelineError(f"bug: unexpected {type(exc).__name__}: {exc}") from exc
        finally:
            # The heartbeats end before shutdown closes their client (a beat in flight then
            # fails and the thread, seeing the stop, ends quietly): the one CRITICAL line of
            # an exit on a bug is not followed by "heartbeat failed" tracebacks.
            self.stop_event.set()
            self.shutdown()
            hb.join(5)

    def shutdown(self) -> None:
        """Graceful stop: final commits, then deregister so partitions move at once."""
        try:
            # Commit every gathered group; a group that waited behind one in flight starts
            # when that one is settled, hence the rounds.
            for _ in range(5):
                self._flush_groups(force=True)
                for o in list(self.owned.values()):
                    self._settle(o)
                if all(o.proto.idle for o in self.owned.values()):
                    break
            self.sink.flush()
            self.commit()
            self._client.deregister(self.cfg.worker_id)
        except (PipelineError, CoordinatorUnavailable, RequestRejected) as exc:
            log.warning("graceful shutdown incomplete: %s", exc)
        finally:
            for o in list(self.owned.values()):
                self._drop(o)
            self._take_pool.shutdown(wait=True)
            for _, fut in self._taking.values():
                with contextlib.suppress(Exception):
                    taken = fut.result()
                    if taken.txn is not None:
                        taken.txn.close()
            self._txn_pool.shutdown(wait=True)
            for rt in self.jobs.values():
                rt.source.close()
                if rt.offsets is not None:
                    rt.offsets.close()
            self._hb_client.close()
            self._client.close()


def _after(records: list[InRecord], position: int | None) -> list[InRecord]:
    """Drop records already processed (seen again after a reassignment or replay)."""
    if position is None or not records or records[0].offset >= position:
        return records
    return [r for r in records if r.offset >= position]
