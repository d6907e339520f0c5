"""Consumer and producer wrappers: the runtime's only contact with librdkafka.

The consumer uses `assign()` only, never group `subscribe()`: the coordinators own partition
ownership and resume offsets, so Kafka's group protocol must not move partitions behind their
back. The group id exists only so that transactional offset commits have a home.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from pipeline.errors import KafkaUnavailable, PipelineError
from pipeline.executor.deadletter import dead_letter_record
from pipeline.executor.records import DeadLetter, InRecord, OutRecord

__all__ = ["TP", "Sink", "Source"]

log = logging.getLogger(__name__)

TP = tuple[str, int]
# librdkafka waits up to `reconnect.backoff.max.ms` (default 10 s) before it tries a broker
# again; 1 s keeps "processing resumes within 2 s of the broker coming back" (issue 13).
_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 1000}
_COORDINATOR_ERRORS = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


class Source:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        isolation: str = "read_uncommitted",
        extra: dict[str, Any] | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 32768,
            **_RECONNECT,
        }
        conf.update(extra or {})
        self._consumer = Consumer(conf)
        self.assigned: set[TP] = set()
        self.paused: set[TP] = set()

    def assign(self, partitions: Iterable[tuple[str, int, int | None]]) -> None:
        tps = [TopicPartition(t, p, OFFSET_BEGINNING if o is None else o) for t, p, o in partitions]
        if tps:
            self._consumer.incremental_assign(tps)
            self.assigned.update((tp.topic, tp.partition) for tp in tps)

    def unassign(self, partitions: Iterable[TP]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions if (t, p) in self.assigned]
        if tps:
            self._consumer.incremental_unassign(tps)
            for tp in tps:
                self.assigned.discard((tp.topic, tp.partition))
                self.paused.discard((tp.topic, tp.partition))

    def pause(self, partitions: Iterable[TP]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions if (t, p) not in self.paused]
        if tps:
            self._consumer.pause(tps)
            self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, partitions: Iterable[TP]) -> None:
        tps = [TopicPartition(t, p) for t, p in partitions if (t, p) in self.paused]
        if tps:
            self._consumer.resume(tps)
            for tp in tps:
                self.paused.discard((tp.topic, tp.partition))

    def poll_batch(self, max_records: int, timeout: float) -> dict[TP, list[InRecord]]:
        """Up to `max_records` records grouped per partition, each group in offset order."""
        if not self.assigned:
            return {}
        out: dict[TP, list[InRecord]] = {}
        current: list[InRecord] | None = None
        current_key: tuple[str, int] = ("", -1)
        assigned = self.assigned
        # `Any`: librdkafka's stubs allow None for fields a consumed record always has.
        messages: list[Any] = self._consumer.consume(max_records, timeout)
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise PipelineError(f"fatal consumer error: {err.str()}")
                log.warning("consumer error (retrying): %s", err.str())
                continue
            topic, partition = msg.topic(), msg.partition()
            if (topic, partition) != current_key:
                # consume() returns runs of one partition: look the group up once per run.
                current_key = (topic, partition)
                tp = (topic, partition)
                # Records fetched before an unassign are dropped.
                current = out.setdefault(tp, []) if tp in assigned else None
            if current is not None:
                _kind, ts = msg.timestamp()
                headers = msg.headers()
                current.append(
                    InRecord(
                        topic, partition, msg.offset(), msg.key(), msg.value(), ts,
                        tuple((k, _as_bytes(v)) for k, v in headers) if headers else (),
                    )
                )  # fmt: skip
        return out

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def committed(self, partitions: Iterable[TP], timeout: float = 10.0) -> dict[TP, int | None]:
        """Offsets committed for this consumer's group. The group coordinator may be moving
        or still loading (NOT_COORDINATOR right after a topic or group is created), so
        retriable errors are retried until `timeout`; after that the broker counts as
        unavailable (transient: the takeover is tried again later)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        deadline = time.monotonic() + timeout
        while True:
            try:
                res = self._consumer.committed(tps, timeout=max(1.0, deadline - time.monotonic()))
            except KafkaException as exc:
                err = exc.args[0]
                if (err.retriable() or err.code() in _COORDINATOR_ERRORS) and (
                    time.monotonic() < deadline
                ):
                    time.sleep(0.1)  # back-off before asking again, not synchronisation
                    continue
                raise KafkaUnavailable(f"cannot read committed offsets: {err.str()}") from exc
            return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in res}

    def high_watermarks(self, partitions: Iterable[TP], timeout: float = 1.0) -> dict[TP, int]:
        """End offsets as last seen in fetch responses (free, and fresh while consuming); a
        partition nothing has been fetched from yet (e.g. an empty one) asks the broker."""
        out: dict[TP, int] = {}
        for t, p in partitions:
            tp = TopicPartition(t, p)
            for cached in (True, False):
                try:
                    _low, high = self._consumer.get_watermark_offsets(
                        tp, timeout=timeout, cached=cached
                    )
                except KafkaException:
                    continue
                if high >= 0:
                    out[(t, p)] = int(high)
                    break
        return out

    def positions(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Next offset the consumer will return per partition (None-free: unknown ones are
        left out). It moves past transaction markers that are never returned as records."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            got = self._consumer.position(tps)
        except KafkaException:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}

    def close(self) -> None:
        self._consumer.close()


def _fenced(err: KafkaError) -> bool:
    """A newer producer with our transactional id took over (not: any fatal error)."""
    return err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                          KafkaError.INVALID_PRODUCER_EPOCH)  # fmt: skip


def _as_bytes(v: str | bytes | None) -> bytes:
    if v is None:
        return b""
    return v.encode() if isinstance(v, str) else v


class Sink:
    """A producer that remembers delivery failures so that `flush` can refuse to report
    success: at-least-once commits a checkpoint only after every output is acknowledged."""

    def __init__(self, bootstrap: str, extra: dict[str, Any] | None = None) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000,
            # One callback for the whole producer, called for failures only: a callback per
            # message costs ~0.7 us per record, and success needs no bookkeeping here.
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
            **_RECONNECT,
        }
        conf.update(extra or {})
        self._errors: list[str] = []
        self._producer = Producer(conf)

    @property
    def producer(self) -> Producer:
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

    def send(self, rec: OutRecord) -> None:
        self._produce(rec.topic, rec.key, rec.value, list(rec.headers) or None, rec.partition)

    def send_all(self, records: Iterable[OutRecord]) -> None:
        """The hot path: one Python loop, no wrapper call per record."""
        produce = self._producer.produce
        for rec in records:
            try:
                if rec.headers:
                    produce(rec.topic, rec.value, rec.key, rec.partition,
                            headers=list(rec.headers))  # fmt: skip
                else:
                    produce(rec.topic, rec.value, rec.key, rec.partition)
            except BufferError:
                self.send(rec)  # queue full: the slow path waits for deliveries

    def send_dead_letter(self, topic: str, dl: DeadLetter) -> None:
        rec = dead_letter_record(topic, dl)
        self._produce(rec.topic, rec.key, rec.value, list(rec.headers))

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        partition: int = -1,
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain

    def backlog(self) -> int:
        return len(self._producer)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every output is acknowledged. Brokers down, leaders moving or too few
        in-sync replicas show up as a timeout or as failed deliveries: both are transient
        (at-least-once replays the batch from its applied offset)."""
        left = self._producer.flush(timeout)
        if left:
            raise KafkaUnavailable(f"{left} records not delivered within {timeout:.0f}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise KafkaUnavailable(f"delivery failed: {'; '.join(errors[:5])}")


class ProducerFenced(PipelineError):
    """A newer producer with our transactional id exists: we are a zombie for this partition."""


# AddOffsetsToTxn + TxnOffsetCommit: two small requests, milliseconds when the brokers answer.
# A call started while the network to the brokers was failing can outlast the outage by its
# whole timeout (librdkafka#5456: it waits for a broker state change); measured 13 s after a
# 20 s connection-reset outage with 15 s (test_chaos_cluster.py). Failing it sooner aborts the
# transaction and retakes the partition, which reconciles (docs/architecture.md, sec. 6).
_SEND_OFFSETS_TIMEOUT = 4.0


class TransactionFailed(KafkaUnavailable):
    """The transaction was aborted or timed out; nothing of it is visible to read_committed
    readers. Transient: the partition is taken over again, which reconciles."""


class TransactionalSink:
    """One transactional producer per owned partition (docs/architecture.md, sec. 4, step b).

    `transactional.id = paxline.{job}.{topic}.{partition}` is what fences the previous owner:
    `init_transactions` aborts its open transaction and makes its producer fail from then on.
    """

    def __init__(self, bootstrap: str, transactional_id: str, extra: dict[str, Any] | None = None):
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            # Outputs become readable at the commit (every <= 0.2 s, which flushes at once),
            # not when sent: a longer linger than the at-least-once sink's 5 ms costs no
            # latency and makes fewer, larger produce requests (broker CPU is what exactly-
            # once spends more of, docs/benchmarks-pipeline.md).
            "linger.ms": 20,
            "compression.type": "lz4",
            "transaction.timeout.ms": 60000,
            # The next transaction's AddOffsetsToTxn meets CONCURRENT_TRANSACTIONS while the
            # broker still writes the previous one's markers, and librdkafka retries after
            # `retry.backoff.ms` (default 100): every transaction cost ~110 ms here, 5 ms
            # makes it ~10 ms (bench/txn_latency.py). Real failures still back off
            # exponentially up to `retry.backoff.max.ms`.
            "retry.backoff.ms": 5,
            # send_offsets_to_transaction can wait for a broker state change that never
            # comes once it lost the group coordinator, past its timeout (librdkafka#5456,
            # #5511; here: minutes, after every broker connection was reset for 6 s, in
            # tests/pipeline/worker/test_chaos_cluster.py). Closing idle connections makes
            # such state changes happen, so the call wakes up and times out or completes.
            "connections.max.idle.ms": 5000,
            # The same wait, after a broker (or the network to it) came back: with sparse
            # connections a producer waiting on its coordinator does not even try to reach
            # it, and nothing wakes the wait until some connection changes state (seen: 13 s
            # after every connection through a fault proxy was reset for 20 s, issue 13).
            # Connected to every broker, its broker threads reconnect within
            # `reconnect.backoff.max.ms` of the broker coming back, and that state change
            # re-runs the coordinator request at once.
            "enable.sparse.connections": False,
            # And when the group coordinator's broker died (or every connection was reset),
            # librdkafka keeps it cached as a decommissioned handle whose thread is gone, so
            # TxnOffsetCommit waits for some other broker to change state (#5511; fix PR
            # #5512 not released): traced, 4-6 s after a reset, and 6.7-49 s to lag 0 in a
            # third of the broker SIGKILL rounds, each transaction waiting again. A metadata
            # refresh every second re-learns the brokers and that state change re-runs the
            # coordinator lookup: 10 of 10 rounds 0.7-1.1 s. Cost: one metadata request per
            # transactional producer (= per exactly-once partition) per second.
            "topic.metadata.refresh.interval.ms": 1000,
            **_RECONNECT,
        }
        conf.update(extra or {})
        self.transactional_id = transactional_id
        self._producer = Producer(conf)

    def init(self, timeout: float = 15.0) -> None:
        try:
            self._producer.init_transactions(timeout)
        except KafkaException as exc:
            raise TransactionFailed(f"init_transactions({self.transactional_id}): {exc}") from exc

    def begin(
        self, outputs: Iterable[OutRecord], dead_letters: Iterable[tuple[str, DeadLetter]]
    ) -> None:
        """Open the transaction and produce into it. Called on the worker's main thread:
        produce() is cheap C work that would only contend for the GIL on a commit thread."""
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            self._fail(exc, abort=False)
        self.produce(outputs, dead_letters)

    def produce(
        self, outputs: Iterable[OutRecord], dead_letters: Iterable[tuple[str, DeadLetter]]
    ) -> None:
        """Produce into the open transaction (main thread, as `begin`)."""
        produce = self._producer.produce
        try:
            for rec in outputs:
                try:
                    if rec.headers:
                        produce(rec.topic, rec.value, rec.key, rec.partition,
                                headers=list(rec.headers))  # fmt: skip
                    else:
                        produce(rec.topic, rec.value, rec.key, rec.partition)
                except BufferError:
                    # The local queue is full: what is queued is sent inside the transaction,
                    # so wait for room instead of aborting (a group may have more outputs
                    # than `queue.buffering.max.messages`; aborting would retake forever).
                    self._produce(rec.topic, rec.key, rec.value, list(rec.headers) or None,
                                  rec.partition)  # fmt: skip
            for topic, dl in dead_letters:
                rec = dead_letter_record(topic, dl)
                self._produce(rec.topic, rec.key, rec.value, list(rec.headers))
        except KafkaException as exc:
            self._fail(exc, abort=True)

    def commit(
        self, offset: tuple[str, int, int], group_metadata: Any, timeout: float = 15.0
    ) -> None:
        """Add the consumed offset and commit: the commit point. Mostly waiting on the broker
        (GIL released), so it runs on a commit thread."""
        p = self._producer
        topic, partition, end = offset
        try:
            p.send_offsets_to_transaction(
                [TopicPartition(topic, partition, end)], group_metadata,
                min(timeout, _SEND_OFFSETS_TIMEOUT),
            )  # fmt: skip
            p.commit_transaction(timeout)
        except KafkaException as exc:
            self._fail(exc, abort=True, timeout=min(timeout, _SEND_OFFSETS_TIMEOUT))

    def _fail(self, exc: KafkaException, abort: bool, timeout: float = 15.0) -> None:
        err = exc.args[0]
        if _fenced(err):
            raise ProducerFenced(f"{self.transactional_id}: {err.str()}") from exc
        if abort and not err.fatal():
            try:
                self._producer.abort_transaction(timeout)
            except KafkaException as abort_exc:
                if _fenced(abort_exc.args[0]):
                    raise ProducerFenced(f"{self.transactional_id}: abort failed") from abort_exc
                err = abort_exc.args[0]
        # Any other failure, fatal for this producer or not (e.g. INVALID_TXN_STATE from an
        # abort after the network failed mid-transaction), says nothing about ownership: the
        # partition is retaken after back-off with a new producer, not held until the next
        # heartbeat as a fenced one is (issue 13: that wait added 1-4 s to recovery).
        raise TransactionFailed(f"{self.transactional_id}: {err.str()}") from exc

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any, partition: int = -1
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                self._producer.poll(0.05)

    def close(self) -> None:
        """Give the producer up. A fenced (or otherwise failed) producer raises its fatal
        error from every call, flush included: that is the expected end of a producer whose
        partition moved, never a reason to stop the worker (issue 13)."""
        try:
            self._producer.flush(0)
        except KafkaException as exc:
            log.info("%s: closed after %s", self.transactional_id, exc.args[0].str())
