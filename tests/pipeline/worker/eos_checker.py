"""The exactly-once checker: compares what a job left in Kafka (read_committed) and Redis with
one failure-free computation over the same input, and reports every lost, duplicated or
wrong record or state entry.

The failure-free computation runs the job's own pure executor in memory, stage by stage and
partition by partition, over the records actually in the input topic. A later stage reads
the committed content of its repartition topic (which is itself checked against the earlier
stage's reference output first), so the reference sees the same per-partition order as the
real run. Reusable by the chaos benchmark: `check(job, bootstrap, redis_url)`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipeline.executor import InRecord, Plan, compile_job
from pipeline.executor.ticks import is_tick
from pipeline.job import Job
from pipeline.spec import build_spec
from pipeline.state import MemoryStore, RedisStores, StateKey

Rec = tuple[bytes | None, bytes]  # (key, value)
_HW = b"paxline.hw:"  # de-duplication bookkeeping, not job state


@dataclass
class Report:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    outputs: int = 0
    state_entries: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong)

    def __str__(self) -> str:
        lines = [f"outputs checked: {self.outputs}, state entries checked: {self.state_entries}"]
        for name in ("lost", "duplicated", "wrong"):
            items = getattr(self, name)
            if items:
                lines.append(f"{len(items)} {name}: " + "; ".join(items[:10]))
        return "\n".join(lines)


def read_partitions(bootstrap: str, topic: str) -> dict[int, list[InRecord]]:
    """Every committed record of every partition, in offset order."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"checker-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })  # fmt: skip
    parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: dict[int, list[InRecord]] = {p: [] for p in parts}
    done: set[int] = set()
    while done != set(parts):
        for msg in consumer.consume(5000, 1.0):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
                continue
            _, ts = msg.timestamp()
            out[msg.partition()].append(InRecord(
                topic, msg.partition(), msg.offset(), msg.key(), msg.value(), ts,
                tuple((k, v or b"") for k, v in (msg.headers() or [])),
            ))  # fmt: skip
    consumer.close()
    return out


def compare_records(where: str, want: Counter[Rec], got: Counter[Rec], report: Report) -> None:
    report.outputs += sum(got.values())
    for rec, n in (want - got).items():
        report.lost.append(f"{where}: {rec!r} x{n}")
    for rec, n in (got - want).items():
        kind = report.duplicated if rec in want else report.wrong
        kind.append(f"{where}: {rec!r} x{n}")


def compare_state(where: str, want: dict[bytes, bytes], got: dict[bytes, bytes], r: Report) -> None:
    want = {k: v for k, v in want.items() if not k.startswith(_HW)}
    got = {k: v for k, v in got.items() if not k.startswith(_HW)}
    r.state_entries += len(got)
    for k in sorted(want.keys() | got.keys()):
        if want.get(k) != got.get(k):
            r.wrong.append(f"{where}[{k!r}]: expected {want.get(k)!r}, found {got.get(k)!r}")


def check(
    job: Job,
    bootstrap: str,
    redis_url: str,
    read: Callable[[str, str], dict[int, list[InRecord]]] = read_partitions,
) -> Report:
    """`read(bootstrap, topic)`: a topic's committed records per partition; a test of a
    source that is not Kafka (issue 19: RabbitMQ streams) reads stage 0's input its way."""
    plan: Plan = compile_job(job)
    stores = RedisStores(redis_url)  # any deployment: single, Sentinel, cluster
    report = Report()
    view: dict[bytes, bytes] = {}
    expected_next: dict[str, Counter[Rec]] = {}
    # A table feeder (a join_table's topic) runs before the stage it feeds: both write the
    # repartition topic that stage reads, and it is checked against their outputs together.
    order = sorted(plan.stages, key=lambda s: (s.index, 1) if s.feeds is None else (s.feeds, 0))
    for stage in order:
        topic = stage.topics[0]
        inputs = read(bootstrap, topic)
        if topic in expected_next:  # a repartition topic: check it, then feed it on
            # Idle ticks (pipeline/executor/ticks.py) are appended by the worker, not by the
            # upstream stage; the reference below replays them where they are.
            got = Counter((r.key, r.value) for rs in inputs.values() for r in rs if not is_tick(r))
            compare_records(topic, expected_next.pop(topic), got, report)
        outputs: dict[str, Counter[Rec]] = {}
        for partition, records in sorted(inputs.items()):
            store = MemoryStore()
            for start in range(0, len(records), 500):
                batch = records[start : start + 500]
                res = plan.process(stage.index, batch, store)
                store.apply(res.state_writes, {}, batch[-1].offset + 1)
                for k, v in res.view_writes.items():
                    if v is None:
                        view.pop(k.encode(), None)
                    else:
                        view[k.encode()] = v
                for out in res.outputs:
                    outputs.setdefault(out.topic, Counter())[(out.key, out.value)] += 1
            if stage.stateful:
                got_state = stores.read_state(StateKey(plan.job_name, topic, partition))
                want_state = {k.encode(): v for k, v in store.data.items()}
                compare_state(f"state {topic}[{partition}]", want_state, got_state, report)
        for out_topic, want in outputs.items():
            if stage.output == "repartition":
                expected_next.setdefault(out_topic, Counter()).update(want)
            else:
                got = Counter(
                    (r.key, r.value)
                    for rs in read_partitions(bootstrap, out_topic).values()
                    for r in rs
                )
                compare_records(out_topic, want, got, report)
        if stage.output == "redis":
            sink_view = str(build_spec(job, "x:y")["sink"]["view"])
            actual_view = stores.read_view(plan.job_name, sink_view)
            compare_state("view", view, actual_view, report)
    return report
