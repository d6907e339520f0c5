"""Exactly-once for one partition: takeover, reconciliation and the per-batch commit
(docs/architecture.md, sec. 4).

Takeover, in this order, because each step relies on the previous one:
1. `init_transactions()` with `transactional.id = paxline.{job}.{topic}.{partition}` fences
   the previous owner's producer and aborts its open transaction, so Kafka's committed offset
   for the partition can no longer move behind our back;
2. Redis records our epoch, so the previous owner's scripts are refused from now on;
3. read Kafka's committed offset K (group `paxline.{job}`), the agreed checkpoint A and Redis'
   applied offset R, and reconcile: K ahead of A is committed through Paxos first; R ahead of
   K (a batch applied in Redis whose transaction never committed) is rolled back with the undo
   images; R behind K (or no state at all while K exists) means Redis lost state: it is
   restored from the changelog first (`pipeline.restore`, issue 16), so reconcile sees R == K.
   The checkpoint commit of 3a is made even when K equals A: after step 1 it proves that the
   coordinators still give us the partition at this epoch, so an owner that would be assigned
   next fences us in Kafka after our step 1, never before (a worker retaking a partition after
   a transient fault may hold an assignment that just moved).
Then resume from K.

A transient fault in any later step of a batch never continues from memory: the worker drops
the partition and runs this whole takeover again at the same epoch (docs/architecture.md,
sec. 6). Step 2 counts takeovers in Redis, so a script the earlier incarnation sent before the
fault and that lands late is refused.

Per group of batches - in the order `pipeline.commit.protocol` gives, which the worker runs:
(a) Redis script (epoch check, undo images, state, applied offset) -> (b) one Kafka
transaction with outputs, dead letters and `send_offsets_to_transaction` - the commit point
-> (c) `CommitCheckpoint` through Paxos on the worker's interval.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.commit.protocol import Guarantee
from pipeline.commit.takeover import Durable, reconcile
from pipeline.errors import CoordinatorsUnavailable, PipelineError
from pipeline.executor.records import BatchResult
from pipeline.kafka.clients import Source, TransactionalSink
from pipeline.restore import RestoreTarget, needs_restore
from pipeline.state import MemoryStore, PartitionStore, StateKey
from pipeline.state.redis import EpochRedisStore, RedisStores

__all__ = [
    "NotOwner",
    "Overlay",
    "PartitionTxn",
    "StateLost",
    "Taken",
    "crash_point",
    "take_over",
    "transactional_id",
]

log = logging.getLogger(__name__)


class StateLost(PipelineError):
    """Redis is behind Kafka's commit point: state that outputs depend on is gone."""


class NotOwner(PipelineError):
    """The coordinators refused our checkpoint at this epoch: the partition moved on."""


def transactional_id(key: StateKey) -> str:
    return f"paxline.{key.job}.{key.topic}.{key.partition}"


_CRASH_COUNTS: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Test hook: `PAXLINE_CRASH_AT=after_a:3` kills the process (exit 137, like SIGKILL, with
    no cleanup) the third time it passes step boundary `after_a`. Unset in production."""
    spec = os.environ.get("PAXLINE_CRASH_AT")
    if not spec:
        return
    where, _, nth = spec.partition(":")
    if where != name:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if _CRASH_COUNTS[name] >= int(nth or "1"):
        log.warning("PAXLINE_CRASH_AT=%s: crashing now", spec)
        os._exit(137)


class Overlay:
    """State as the executor must see it: writes of the open group and of the group still
    committing take precedence over Redis, which has neither yet."""

    def __init__(self, store: PartitionStore, layers: list[dict[str, bytes | None]]) -> None:
        self.store = store
        self.layers = layers  # newest first

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        """In the order asked, as every store answers (`pipeline.state.base`)."""
        missing = [k for k in keys if not any(k in layer for layer in self.layers)]
        below = self.store.get_many(missing) if missing else {}
        out: dict[str, bytes | None] = {}
        for k in keys:
            for layer in self.layers:
                if k in layer:
                    out[k] = layer[k]
                    break
            else:
                out[k] = below.get(k)
        return out


class PartitionTxn:
    """The partition's transactional producer, as the commit protocol's effects use it
    (`pipeline.commit.protocol`: BeginTxn, ProduceInTxn, CommitTxn)."""

    def __init__(self, producer: TransactionalSink, key: StateKey) -> None:
        self.producer = producer
        self.key = key

    def begin(self, res: BatchResult, dead_letter_topic: str) -> None:
        """Main thread: open the transaction and produce the group's outputs into it."""
        self.producer.begin(res.outputs, [(dead_letter_topic, dl) for dl in res.dead_letters])

    def produce(self, res: BatchResult, dead_letter_topic: str) -> None:
        """Main thread: produce a later batch of the group into the open transaction."""
        self.producer.produce(res.outputs, [(dead_letter_topic, dl) for dl in res.dead_letters])

    def commit(self, end: int, group_metadata: Any) -> None:
        """Commit thread: the consumed offset into the transaction, and commit (step b)."""
        self.producer.commit((self.key.topic, self.key.partition, end), group_metadata)

    def close(self) -> None:
        self.producer.close()


@dataclass
class Taken:
    start: int | None
    store: PartitionStore
    txn: PartitionTxn
    agreed: int | None  # the checkpoint agreed during the takeover


def take_over(
    *,
    kafka: str,
    source: Source,
    stores: RedisStores | None,
    key: StateKey,
    epoch: int,
    agreed: int | None,
    view: str,
    commit: Callable[[int], str],
    producer_factory: Callable[[str, str], TransactionalSink] = TransactionalSink,
    restore: Callable[[RestoreTarget, int | None], int | None] | None = None,
) -> Taken:
    """Steps 1-3 above; the decision of step 3 is `pipeline.commit.takeover.reconcile`.
    `commit(offset)` commits a checkpoint at our epoch and answers "ok", "fenced" or "failed"
    (coordinators unreachable). `restore(store, K)` rebuilds Redis from the changelog and
    returns the applied offset it wrote (`pipeline.restore.restore_partition`)."""
    producer = producer_factory(kafka, transactional_id(key))
    try:
        producer.init()  # 1. fence the previous owner's producer
        store: PartitionStore = MemoryStore()
        eos_store: EpochRedisStore | None = None
        if stores is not None:
            eos_store = stores.epoch_store(key, epoch, view)
            eos_store.take_over()  # 2. fence the previous owner's Redis writes
            store = eos_store
        tp = (key.topic, key.partition)
        kafka_offset = source.committed([tp])[tp]
        applied, has_undo, base = None, False, None
        if eos_store is not None:
            applied = eos_store.applied_offset()
            if restore is not None and needs_restore(applied, kafka_offset):
                applied = restore(eos_store, kafka_offset)  # Redis lost state (issue 16)
            if applied != kafka_offset:
                has_undo, base = eos_store.undo_base()
        rec = reconcile(
            Guarantee.EXACTLY_ONCE,
            Durable(kafka_offset, agreed, applied, has_undo, base),
            stateful=eos_store is not None,
        )
        # 3a. The last transactions committed but their checkpoints never reached Paxos; or
        # (equal) the ownership check through Paxos described above.
        if rec.checkpoint is not None:
            status = commit(rec.checkpoint)
            if status == "fenced":
                raise NotOwner(f"{transactional_id(key)}: epoch {epoch} was fenced")
            if status != "ok":
                raise CoordinatorsUnavailable(
                    f"{transactional_id(key)}: could not agree {rec.checkpoint} through the "
                    "coordinators"
                )
            if kafka_offset is not None and (agreed is None or kafka_offset > agreed):
                log.info("%s: agreed offset %s caught up with Kafka's %s",
                         transactional_id(key), agreed, kafka_offset)  # fmt: skip
        if rec.lost is not None:
            raise StateLost(rec.lost)  # 3c
        if rec.rollback and eos_store is not None:  # 3b
            eos_store.rollback()
            log.info("%s: rolled Redis back from %s to %s (transaction never committed)",
                     transactional_id(key), applied, kafka_offset)  # fmt: skip
    except BaseException:
        producer.close()
        raise
    return Taken(rec.start, store, PartitionTxn(producer, key), rec.checkpoint)
