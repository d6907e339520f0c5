"""Topic administration: the runtime creates its topics up front (auto-create is off).

The CLI calls these with short deadlines (`paxline ... --timeout`, 3 s by default): a broker
that does not answer raises `BrokerUnreachable`, which names the address tried, instead of
librdkafka's default waits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from pipeline.errors import KafkaUnavailable, PipelineError

__all__ = [
    "BrokerUnreachable",
    "committed_lag",
    "committed_offsets",
    "create_topics",
    "delete_topics",
    "end_offsets",
    "topic_partitions",
    "topic_replication",
]

#: Above this many offsets between a partition's start and end, `committed_lag` does not read
#: the records to count them and reports the offset distance (transaction markers included).
LAG_COUNT_LIMIT = 2000


class BrokerUnreachable(KafkaUnavailable):
    """The broker did not answer an admin request before the deadline (names the address,
    for the CLI's one-line error); a `KafkaUnavailable`, so the worker treats it as transient."""

    def __init__(self, bootstrap: str, timeout: float, detail: str) -> None:
        self.bootstrap = bootstrap
        super().__init__(f"kafka at {bootstrap} did not answer within {timeout:.1f}s ({detail})")


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def _metadata(admin: AdminClient, bootstrap: str, timeout: float) -> Any:
    """The cluster's metadata, or `BrokerUnreachable`. Raised outside the handler, with no
    cause: librdkafka's exception holds the admin client in its traceback (the frame of
    `list_topics`), and with it the client's threads and connection attempts for as long as
    anything holds the error; a worker retries this for as long as the broker is down."""
    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        detail = exc.args[0].str()
    del admin
    raise BrokerUnreachable(bootstrap, timeout, detail)


def topic_partitions(bootstrap: str, names: Iterable[str], timeout: float = 10.0) -> dict[str, int]:
    """Partition counts of those of `names` that exist (one metadata request for all), so a
    caller can refuse a mismatch before it creates anything."""
    meta = _metadata(_admin(bootstrap), bootstrap, timeout)
    wanted = set(names)
    return {
        name: len(t.partitions)
        for name, t in meta.topics.items()
        if name in wanted and t.error is None
    }


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 10.0) -> list[str]:
    """Delete topics (a failed submit takes back what it created); returns those that could
    not be deleted, with the reason."""
    names = list(names)
    if not names:
        return []
    problems: list[str] = []
    for name, fut in _admin(bootstrap).delete_topics(names, operation_timeout=timeout).items():
        try:
            fut.result(timeout)
        except Exception as exc:  # KafkaException, or the future's own timeout
            problems.append(f"{name}: {exc}")
    return problems


def topic_replication(brokers: int) -> int:
    """The replication factor a new topic gets on a cluster of `brokers` brokers."""
    return max(1, min(3, brokers))


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
    replication: int | None = None,
) -> None:
    """Create each topic with the given partition count; an existing topic is accepted only
    if its partition count matches, so a silent mismatch can never skew assignment. The
    replication factor is, unless given, what the cluster allows: min(3, brokers)."""
    admin = _admin(bootstrap)
    try:
        if replication is None:
            replication = topic_replication(len(_metadata(admin, bootstrap, timeout).brokers))
        new = [NewTopic(name, n, replication, config=dict(config or {}))
               for name, n in topics.items()]  # fmt: skip
        for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() != err.TOPIC_ALREADY_EXISTS:
                    raise PipelineError(f"cannot create topic {name!r}: {err.str()}") from None
        # Created here or by a concurrent creator (TOPIC_ALREADY_EXISTS), a topic can still be
        # missing from the answering broker's metadata, or listed with 0 partitions, for a
        # moment: wait for it (bounded) before comparing counts, never report that as a
        # mismatch (issue 16: two workers loading one job raced here and stalled 4-13 s).
        counts = _await_partitions(admin, bootstrap, list(topics), time.monotonic() + timeout)
        for name, n in topics.items():
            if counts[name] != n:
                raise PipelineError(
                    f"topic {name!r} exists with {counts[name]} partitions, expected {n}"
                )
    finally:
        del admin  # an error raised here must not hold the client (see `_metadata`)


def _await_partitions(
    admin: AdminClient, bootstrap: str, names: list[str], deadline: float
) -> dict[str, int]:
    """Partition counts of `names` once the metadata lists each with its partitions and no
    error. A topic the controller just created (by us or by a concurrent creator) reaches the
    brokers' metadata a little later: until the deadline that is waited for; after it the
    error is a transient `KafkaUnavailable` (the worker retries), never a count mismatch."""
    pending = set(names)
    counts: dict[str, int] = {}
    pause = 0.02
    while True:
        meta = _metadata(admin, bootstrap, max(0.5, deadline - time.monotonic()))
        for name in list(pending):
            t = meta.topics.get(name)
            if t is not None and t.error is None and len(t.partitions) > 0:
                counts[name] = len(t.partitions)
                pending.discard(name)
        if not pending:
            return counts
        if time.monotonic() >= deadline:
            raise KafkaUnavailable(
                f"topics {sorted(pending)} created but not in the metadata of kafka at "
                f"{bootstrap} in time"
            )
        time.sleep(pause)
        pause = min(0.25, pause * 2)


def end_offsets(
    bootstrap: str, partitions: list[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int]:
    """High watermarks (next offset to be written) per (topic, partition), all within
    `timeout` seconds."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "paxline-admin", "enable.auto.commit": False,
         "log_level": 0}
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        out: dict[tuple[str, int], int] = {}
        for topic, part in partitions:
            left = max(0.05, deadline - time.monotonic())
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, part), left)
            except KafkaException as exc:
                raise BrokerUnreachable(bootstrap, timeout, exc.args[0].str()) from exc
            out[(topic, part)] = int(high)
        return out
    finally:
        consumer.close()


def committed_lag(
    bootstrap: str,
    starts: Mapping[tuple[str, int], int | None],
    ends: Mapping[tuple[str, int], int],
    read_committed: bool,
    timeout: float = 10.0,
) -> dict[tuple[str, int], int]:
    """Records a consumer starting at `starts` would still read before `ends`.

    The offset distance is not that: a transaction's commit marker takes an offset but is no
    record, so an exactly-once pipeline that has read everything stays one offset (or more)
    "behind" forever. So, where the distance is small, read the records and count them (the
    consumer skips markers and, under read_committed, aborted records); a partition whose
    reader reaches the end without a record has nothing left to read: lag 0. Where the
    distance exceeds `LAG_COUNT_LIMIT`, it is reported as is (an upper bound; lag is far
    from zero anyway), and so is any partition the deadline cut short.
    """
    lag: dict[tuple[str, int], int] = {}
    probe: dict[tuple[str, int], int] = {}
    for tp, end in ends.items():
        start = starts.get(tp) or 0
        gap = max(0, end - start)
        lag[tp] = gap
        if 0 < gap <= LAG_COUNT_LIMIT:
            probe[tp] = start
    if not probe:
        return lag
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "paxline-admin", "enable.auto.commit": False,
        "enable.partition.eof": True, "log_level": 0,
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
    })  # fmt: skip
    counted = dict.fromkeys(probe, 0)
    open_ = set(probe)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in probe.items()])
        while open_ and time.monotonic() < deadline:
            left = max(0.05, deadline - time.monotonic())
            # `Any`: librdkafka's stubs allow None for fields a consumed record always has.
            messages: list[Any] = consumer.consume(1000, min(left, 0.5))
            for msg in messages:
                tp = (msg.topic(), msg.partition())
                if tp not in open_:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        open_.discard(tp)
                    continue
                if msg.offset() >= ends[tp]:
                    open_.discard(tp)  # written since `ends` was read: not counted
                    continue
                counted[tp] += 1
        for tp in probe:
            if tp not in open_:
                lag[tp] = counted[tp]
        return lag
    finally:
        consumer.close()


def committed_offsets(
    bootstrap: str, group: str, partitions: list[tuple[str, int]], timeout: float = 10.0
) -> dict[tuple[str, int], int | None]:
    """Offsets committed for `group` (exactly-once jobs commit inside their transactions to
    group `paxline.{job}`); None where nothing was committed."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
         "log_level": 0}
    )  # fmt: skip
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        try:
            got = consumer.committed(tps, timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnreachable(bootstrap, timeout, exc.args[0].str()) from exc
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in got}
    finally:
        consumer.close()
