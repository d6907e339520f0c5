"""The worker process: takes its assignment from the coordinators and runs the job's stages
on the partitions it owns (at-least-once, DESIGN.md sec. 5).

Per loop: fetch a batch per owned partition -> run the pure executor -> produce outputs and
dead letters -> flush (outputs durable) -> apply state in Redis, guarded by the partition's
applied offset -> and on an interval commit checkpoints through Paxos. Because state is
applied only after the outputs are durable and checkpoints only after the state, a crash at
any point replays from the agreed offset and (thanks to the applied-offset guard) never
updates state twice; the Kafka sink may see duplicates, which at-least-once allows.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from pipeline.checkpoint import Pending, commit_checkpoints
from pipeline.errors import PipelineError
from pipeline.executor import InRecord, Plan, compile_job
from pipeline.job import load_job
from pipeline.kafka.clients import TP, Sink, Source
from pipeline.state import MemoryStore, PartitionStore, RedisStore, StateKey

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


@dataclass
class Owned:
    """A partition this worker owns at `epoch`. `position` is the next offset to process;
    `committed` what the coordinators agreed last."""

    job: str
    topic: str
    partition: int
    epoch: int
    stage: int
    plan: Plan
    store: PartitionStore
    dlq: str
    position: int | None
    committed: int | None

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


@dataclass
class _Heartbeat:
    lock: threading.Lock = field(default_factory=threading.Lock)
    assignment: list[dict[str, Any]] | None = None
    version: int = 0
    error: str = ""


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
        self.source = Source(cfg.kafka, group_id=f"paxline.worker.{cfg.worker_id}")
        self.sink = Sink(cfg.kafka)
        self.owned: dict[TP, Owned] = {}
        self._plans: dict[str, tuple[Plan, dict[str, Any]]] = {}
        self._seen_version = 0
        self._last_commit = time.monotonic()

    # ------------------------------------------------------------------------ heartbeat
    def _heartbeat_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                reply = self._hb_client.heartbeat(self.cfg.worker_id, self.cfg.capacity)
                with self._hb.lock:
                    self._hb.assignment = list(reply["assignment"])
                    self._hb.version += 1
                    self._hb.error = ""
            except (CoordinatorUnavailable, RequestRejected) as exc:
                with self._hb.lock:
                    self._hb.error = str(exc)
                log.warning("heartbeat failed: %s", exc)
            self.stop_event.wait(self.cfg.heartbeat_interval)

    # ----------------------------------------------------------------------- assignment
    def _plan(self, job: str) -> tuple[Plan, dict[str, Any]]:
        cached = self._plans.get(job)
        if cached is None:
            spec = self._client.job(job)["spec"]
            plan = compile_job(load_job(spec["entrypoint"]))
            cached = self._plans[job] = (plan, spec)
        return cached

    def _reconcile(self, assignment: list[dict[str, Any]]) -> None:
        desired = {(a["topic"], a["partition"]): a for a in assignment}
        for tp, o in list(self.owned.items()):
            a = desired.get(tp)
            if a is None or a["job"] != o.job or a["epoch"] != o.epoch:
                self._revoke([o])
        for tp, a in desired.items():
            if tp not in self.owned:
                try:
                    self._take(a)
                except (PipelineError, CoordinatorUnavailable, RequestRejected) as exc:
                    log.error("cannot take %s[%d] of %s: %s", a["topic"], a["partition"],
                              a["job"], exc)  # fmt: skip

    def _take(self, a: dict[str, Any]) -> None:
        plan, spec = self._plan(a["job"])
        sink = spec.get("sink", {})
        view = sink.get("view", "") if sink.get("kind") == "redis" else ""
        stage = plan.stage_for_topic(a["topic"])
        key = StateKey(a["job"], a["topic"], a["partition"])
        store: PartitionStore = (
            RedisStore(self._redis, key, view=view) if plan.stages[stage].stateful or view
            else MemoryStore()
        )  # fmt: skip
        agreed = a["offset"]
        applied = store.applied_offset()
        # State may be ahead of the agreed checkpoint (crash after apply, before commit);
        # its outputs were flushed before it was applied, so resume after it.
        known = [x for x in (agreed, applied) if x is not None]
        start = max(known) if known else None
        o = Owned(a["job"], a["topic"], a["partition"], a["epoch"], stage, plan, store,
                  sink.get("dead_letter") or plan.dead_letter_topic, start, agreed)  # fmt: skip
        self.owned[o.tp] = o
        self.source.assign([(o.topic, o.partition, start)])
        log.info("took %s[%d] of %s at epoch %d from offset %s",
                 o.topic, o.partition, o.job, o.epoch, start)  # fmt: skip

    def _revoke(self, partitions: list[Owned]) -> None:
        """Stop, flush and make a final (fenced) commit."""
        self.source.unassign([o.tp for o in partitions])
        for o in partitions:
            self.owned.pop(o.tp, None)
        self.sink.flush()
        final = [p for p in map(self._pending, partitions) if p is not None]
        if final:
            out = commit_checkpoints(self._client, self.cfg.worker_id, final)
            self.stats.fenced += len(out.fenced)
        log.info("released %s", ", ".join(f"{o.topic}[{o.partition}]" for o in partitions))

    def _pending(self, o: Owned) -> Pending | None:
        if o.position is None or o.position == o.committed:
            return None
        return Pending(o.job, o.topic, o.partition, o.epoch, o.position)

    # ------------------------------------------------------------------------ processing
    def run_once(self) -> int:
        """One poll-process-flush-apply round; returns the number of records consumed."""
        with self._hb.lock:
            version, assignment = self._hb.version, self._hb.assignment
        if assignment is not None and version != self._seen_version:
            self._seen_version = version
            self._reconcile(assignment)
        batches = self.source.poll_batch(self.cfg.batch_size, self.cfg.poll_timeout)
        done: list[tuple[Owned, Any, int]] = []
        consumed = 0
        for tp, records in batches.items():
            o = self.owned.get(tp)
            if o is None:
                continue
            consumed += len(records)
            fresh = _after(records, o.position)
            if not fresh:
                continue
            res = o.plan.process(o.stage, fresh, o.store)
            for out in res.outputs:
                self.sink.send(out)
            for dl in res.dead_letters:
                self.sink.send_dead_letter(o.dlq, dl)
            self.stats.records_in += len(fresh)
            self.stats.records_out += len(res.outputs)
            self.stats.dead_letters += len(res.dead_letters)
            self.stats.late_dropped += res.late_dropped
            done.append((o, res, fresh[-1].offset + 1))
        if done:
            self.sink.flush()  # outputs durable before state and checkpoint move on
            for o, res, end in done:
                if res.state_writes or res.view_writes or isinstance(o.store, RedisStore):
                    o.store.apply(res.state_writes, res.view_writes, end)
                o.position = end
            self.stats.batches += 1
        self._backpressure()
        if time.monotonic() - self._last_commit >= self.cfg.commit_interval:
            self.commit()
        return consumed

    def _backpressure(self) -> None:
        if self.sink.backlog() > self.cfg.max_backlog:
            self.source.pause(list(self.owned))
        elif self.source.paused:
            self.source.resume(list(self.source.paused))

    def commit(self) -> None:
        self._last_commit = time.monotonic()
        pending = [p for p in map(self._pending, self.owned.values()) if p is not None]
        if not pending:
            return
        out = commit_checkpoints(self._client, self.cfg.worker_id, pending)
        for p in out.committed:
            o = self.owned.get((p.topic, p.partition))
            if o is not None and o.epoch == p.epoch:
                o.committed = p.offset
        self.stats.commits += len(out.committed)
        if out.fenced:
            # Someone else owns these now: stop touching them at once.
            self.stats.fenced += len(out.fenced)
            fenced = [self.owned[(p.topic, p.partition)] for p in out.fenced
                      if (p.topic, p.partition) in self.owned]  # fmt: skip
            self.source.unassign([o.tp for o in fenced])
            for o in fenced:
                self.owned.pop(o.tp, None)

    # ------------------------------------------------------------------------ lifecycle
    def run(self) -> None:
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
            self.source.close()
            self._hb_client.close()
            self._client.close()


def _after(records: list[InRecord], position: int | None) -> list[InRecord]:
    """Drop records already processed (seen again after a reassignment or replay)."""
    if position is None or not records or records[0].offset >= position:
        return records
    return [r for r in records if r.offset >= position]
