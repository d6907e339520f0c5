"""The worker process: takes its assignment from the coordinators and runs the job's stages
on the partitions it owns (DESIGN.md sec. 5).

at-least-once, per poll round: run the pure executor -> produce outputs and dead letters ->
flush (outputs durable) -> apply state in Redis, guarded by the partition's applied offset ->
and on an interval commit checkpoints through Paxos. State is applied only after outputs are
durable and checkpoints only after state, so a crash replays from the agreed offset and never
updates state twice; the Kafka sink may see duplicates, which at-least-once allows.

exactly-once, per partition batch (see `pipeline.eos`): (a) one Redis script checks the epoch,
keeps undo images and applies state; (b) one Kafka transaction carries the outputs and the
consumed offset - the commit point; (c) checkpoints through Paxos on an interval. Takeover
fences the previous owner in Kafka, Redis and the coordinators, then reconciles.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from pipeline import eos
from pipeline.checkpoint import Pending, commit_checkpoints
from pipeline.errors import PipelineError
from pipeline.executor import BatchResult, InRecord, Plan, compile_job
from pipeline.job import load_job
from pipeline.kafka.clients import TP, ProducerFenced, Sink, Source, TransactionFailed
from pipeline.metrics import WorkerMetrics
from pipeline.provenance import dedup
from pipeline.state import MemoryStore, PartitionStore, RedisStore, StateKey
from pipeline.state.redis import EpochRedisStore, StaleEpoch

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger(__name__)


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


@dataclass
class JobRuntime:
    """What a worker holds per job: the compiled plan and the job's consumer. The consumer's
    group is `paxline.{job}` so that exactly-once offsets committed inside transactions are
    found by whichever worker owns a partition next."""

    name: str
    plan: Plan
    spec: dict[str, Any]
    source: Source

    @property
    def exactly_once(self) -> bool:
        return self.plan.guarantee == "exactly-once"

    @property
    def view(self) -> str:
        sink = self.spec.get("sink", {})
        return str(sink.get("view", "")) if sink.get("kind") == "redis" else ""

    @property
    def dead_letter_topic(self) -> str:
        return str(self.spec.get("sink", {}).get("dead_letter") or self.plan.dead_letter_topic)


@dataclass
class Owned:
    """A partition this worker owns at `epoch`. `position` is the next offset to process;
    `committed` what the coordinators agreed last."""

    job: JobRuntime
    topic: str
    partition: int
    epoch: int
    stage: int
    store: PartitionStore
    position: int | None
    committed: int | None
    txn: eos.PartitionTxn | None = None

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


@dataclass
class _Heartbeat:
    lock: threading.Lock = field(default_factory=threading.Lock)
    assignment: list[dict[str, Any]] | None = None
    version: int = 0


@dataclass
class WorkerStats:
    records_in: int = 0
    records_out: int = 0
    dead_letters: int = 0
    batches: int = 0
    commits: int = 0
    fenced: int = 0
    late_dropped: int = 0


class Worker:
    def __init__(self, cfg: WorkerConfig) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.stats = WorkerStats()
        self._hb = _Heartbeat()
        self._hb_client = CoordinatorClient(cfg.coordinators, cfg.token, timeout=5)
        self._client = CoordinatorClient(cfg.coordinators, cfg.token, timeout=10)
        self._redis = redis.Redis.from_url(cfg.redis_url)
        self.sink = Sink(cfg.kafka)
        self.jobs: dict[str, JobRuntime] = {}
        self.owned: dict[tuple[str, str, int], Owned] = {}
        self._broken: dict[tuple[str, str, int, int], str] = {}
        self._seen_version = 0
        self._last_commit = time.monotonic()
        self.metrics = WorkerMetrics(cfg.worker_id)
        self._progress: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------ heartbeat
    def _heartbeat_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                reply = self._hb_client.heartbeat(
                    self.cfg.worker_id, self.cfg.capacity, self._progress
                )
                with self._hb.lock:
                    self._hb.assignment = list(reply["assignment"])
                    self._hb.version += 1
            except (CoordinatorUnavailable, RequestRejected) as exc:
                log.warning("heartbeat failed: %s", exc)
            self.stop_event.wait(self.cfg.heartbeat_interval)

    # ----------------------------------------------------------------------- assignment
    def _job(self, name: str) -> JobRuntime:
        rt = self.jobs.get(name)
        if rt is None:
            spec = self._client.job(name)["spec"]
            plan = compile_job(load_job(spec["entrypoint"]))
            isolation = "read_committed" if plan.guarantee == "exactly-once" else "read_uncommitted"
            source = Source(self.cfg.kafka, group_id=f"paxline.{name}", isolation=isolation)
            rt = self.jobs[name] = JobRuntime(name, plan, spec, source)
        return rt

    def _reconcile(self, assignment: list[dict[str, Any]]) -> None:
        desired = {(a["job"], a["topic"], a["partition"]): a for a in assignment}
        for key, o in list(self.owned.items()):
            a = desired.get(key)
            if a is None or a["epoch"] != o.epoch:
                self._revoke([o])
        for key, a in desired.items():
            if key in self.owned or (*key, a["epoch"]) in self._broken:
                continue
            try:
                self._take(a)
            except eos.StateLost as exc:
                # Not guessing: this partition stays stopped until an operator acts.
                self._broken[(*key, a["epoch"])] = str(exc)
                log.error("STOPPED %s[%d] of %s: %s", key[1], key[2], key[0], exc)
            except (PipelineError, CoordinatorUnavailable, RequestRejected, StaleEpoch) as exc:
                log.error("cannot take %s[%d] of %s: %s", key[1], key[2], key[0], exc)

    def _take(self, a: dict[str, Any]) -> None:
        rt = self._job(a["job"])
        stage = rt.plan.stage_for_topic(a["topic"])
        key = StateKey(a["job"], a["topic"], a["partition"])
        stateful = rt.plan.stages[stage].stateful or bool(rt.view)
        agreed: int | None = a["offset"]
        if rt.exactly_once:
            taken = eos.take_over(
                kafka=self.cfg.kafka,
                source=rt.source,
                redis_client=self._redis if stateful else None,
                key=key,
                epoch=a["epoch"],
                agreed=agreed,
                view=rt.view,
                commit=lambda offset: self._commit_now(a, offset),
            )
            o = Owned(rt, key.topic, key.partition, a["epoch"], stage, taken.store,
                      taken.start, agreed, taken.txn)  # fmt: skip
        else:
            store: PartitionStore = MemoryStore()
            if stateful:
                # The epoch fences a previous owner that has not noticed the move yet: its
                # late state writes are refused instead of counted twice.
                store = EpochRedisStore(self._redis, key, a["epoch"], view=rt.view)
                store.take_over()
            # State may be ahead of the agreed checkpoint (crash after apply, before commit);
            # its outputs were flushed before it was applied, so resume after it.
            known = [x for x in (agreed, store.applied_offset()) if x is not None]
            o = Owned(rt, key.topic, key.partition, a["epoch"], stage, store,
                      max(known) if known else None, agreed)  # fmt: skip
        self.owned[(rt.name, o.topic, o.partition)] = o
        rt.source.assign([(o.topic, o.partition, o.position)])
        log.info("took %s[%d] of %s at epoch %d from offset %s",
                 o.topic, o.partition, rt.name, o.epoch, o.position)  # fmt: skip

    def _commit_now(self, a: dict[str, Any], offset: int) -> bool:
        p = Pending(a["job"], a["topic"], a["partition"], a["epoch"], offset)
        return bool(commit_checkpoints(self._client, self.cfg.worker_id, [p]).committed)

    def _drop(self, o: Owned) -> None:
        """Stop touching a partition at once (fenced, or handed back for a retake)."""
        o.job.source.unassign([o.tp])
        self.owned.pop((o.job.name, o.topic, o.partition), None)
        if o.txn is not None:
            o.txn.close()

    def _revoke(self, partitions: list[Owned]) -> None:
        """Stop, flush and make a final (fenced) commit."""
        for o in partitions:
            self._drop(o)
        self.sink.flush()
        final = [p for p in map(self._pending, partitions) if p is not None]
        if final:
            out = commit_checkpoints(self._client, self.cfg.worker_id, final)
            self.stats.fenced += len(out.fenced)
        log.info("released %s", ", ".join(f"{o.topic}[{o.partition}]" for o in partitions))

    @staticmethod
    def _pending(o: Owned) -> Pending | None:
        if o.position is None or o.position == o.committed:
            return None
        return Pending(o.job.name, o.topic, o.partition, o.epoch, o.position)

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
        consumed = 0
        flushed: list[tuple[Owned, BatchResult, int]] = []
        timeout = self.cfg.poll_timeout / max(1, len(self.jobs))
        for rt in list(self.jobs.values()):
            for (topic, partition), records in rt.source.poll_batch(
                self.cfg.batch_size, timeout
            ).items():
                o = self.owned.get((rt.name, topic, partition))
                if o is None:
                    continue
                consumed += len(records)
                fresh = _after(records, o.position)
                if fresh:
                    done = self._process(o, fresh)
                    if done is not None:
                        flushed.append(done)
        if flushed:
            self.sink.flush()  # at-least-once: outputs durable before state and checkpoint
            for o, res, end in flushed:
                if isinstance(o.store, RedisStore):
                    try:
                        o.store.apply(res.state_writes, res.view_writes, end)
                    except StaleEpoch as exc:
                        log.warning("fenced on %s[%d]: %s", o.topic, o.partition, exc)
                        self.stats.fenced += 1
                        self.metrics.fenced.labels(o.job.name).inc()
                        self._drop(o)
                        continue
                o.position = end
        self._backpressure()
        if time.monotonic() - self._last_commit >= self.cfg.commit_interval:
            self.commit()
        return consumed

    def _process(self, o: Owned, fresh: list[InRecord]) -> tuple[Owned, BatchResult, int] | None:
        end = fresh[-1].offset + 1
        hw: dict[str, bytes | None] = {}
        if o.stage > 0 and isinstance(o.store, RedisStore):
            fresh, hw = dedup(fresh, o.store)
        res = o.job.plan.process(o.stage, fresh, o.store) if fresh else BatchResult()
        res.state_writes.update(hw)
        self.stats.records_in += len(fresh)
        self.stats.records_out += len(res.outputs)
        self.stats.dead_letters += len(res.dead_letters)
        m, job = self.metrics, o.job.name
        m.records_in.labels(job).inc(len(fresh))
        m.records_out.labels(job).inc(len(res.outputs))
        m.dead_letters.labels(job).inc(len(res.dead_letters))
        self.stats.late_dropped += res.late_dropped
        self.stats.batches += 1
        if o.txn is None:
            for out in res.outputs:
                self.sink.send(out)
            for dl in res.dead_letters:
                self.sink.send_dead_letter(o.job.dead_letter_topic, dl)
            return (o, res, end)
        try:
            o.txn.commit_batch(o.store, res, o.job.dead_letter_topic, end, o.job.source)
        except (StaleEpoch, ProducerFenced) as exc:
            log.warning("fenced on %s[%d] of %s: %s", o.topic, o.partition, o.job.name, exc)
            self.stats.fenced += 1
            self.metrics.fenced.labels(o.job.name).inc()
            self._drop(o)
        except TransactionFailed as exc:
            # Aborted: give the partition back to ourselves; the retake reconciles Redis.
            log.warning("transaction failed on %s[%d]: %s", o.topic, o.partition, exc)
            self._drop(o)
        else:
            o.position = end
        return None

    def _backpressure(self) -> None:
        for rt in self.jobs.values():
            if self.sink.backlog() > self.cfg.max_backlog:
                rt.source.pause(list(rt.source.assigned))
            elif rt.source.paused:
                rt.source.resume(list(rt.source.paused))

    def _report_progress(self) -> None:
        """Per-partition lag for /metrics and for the coordinators (dashboard)."""
        progress: list[dict[str, Any]] = []
        self.metrics.owned.set(len(self.owned))
        for rt in self.jobs.values():
            ends = rt.source.high_watermarks(list(rt.source.assigned))
            for (topic, partition), end in ends.items():
                o = self.owned.get((rt.name, topic, partition))
                if o is None:
                    continue
                position = o.position
                self.metrics.lag.labels(rt.name, topic, str(partition)).set(end - (position or 0))
                progress.append({"job": rt.name, "topic": topic, "partition": partition,
                                 "position": position, "end": end})  # fmt: skip
        self._progress = progress

    def commit(self) -> None:
        self._last_commit = time.monotonic()
        self._report_progress()
        pending = [p for p in map(self._pending, self.owned.values()) if p is not None]
        if not pending:
            return
        with self.metrics.checkpoint_seconds.time():
            out = commit_checkpoints(self._client, self.cfg.worker_id, pending)
        for p in out.committed:
            o = self.owned.get((p.job, p.topic, p.partition))
            if o is not None and o.epoch == p.epoch:
                o.committed = p.offset
        self.stats.commits += len(out.committed)
        if out.committed:
            eos.crash_point("after_c")
        for p in out.fenced:
            # Someone else owns these now: stop touching them at once.
            self.stats.fenced += 1
            self.metrics.fenced.labels(p.job).inc()
            o = self.owned.get((p.job, p.topic, p.partition))
            if o is not None:
                self._drop(o)

    # ------------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port)
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        hb.start()
        log.info("worker %s started (capacity %d)", self.cfg.worker_id, self.cfg.capacity)
        try:
            while not self.stop_event.is_set():
                self.run_once()
        finally:
            self.shutdown()
            hb.join(5)

    def shutdown(self) -> None:
        """Graceful stop: final commits, then deregister so partitions move at once."""
        try:
            self.sink.flush()
            self.commit()
            self._client.deregister(self.cfg.worker_id)
        except (PipelineError, CoordinatorUnavailable, RequestRejected) as exc:
            log.warning("graceful shutdown incomplete: %s", exc)
        finally:
            for o in list(self.owned.values()):
                self._drop(o)
            for rt in self.jobs.values():
                rt.source.close()
            self._hb_client.close()
            self._client.close()


def _after(records: list[InRecord], position: int | None) -> list[InRecord]:
    """Drop records already processed (seen again after a reassignment or replay)."""
    if position is None or not records or records[0].offset >= position:
        return records
    return [r for r in records if r.offset >= position]
