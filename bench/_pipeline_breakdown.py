"""Per-record CPU cost of each layer: the raw loop's steps against the paxline worker's.

Run by ``bench/pipeline.py`` (``python -P bench/_pipeline_breakdown.py '<json args>'``) after the
timed runs, against the same broker. It consumes the whole input once into memory, keeping
librdkafka's own batches, and then times, in this one process, the steps each system performs per
record, with the real code: the worker's ``Source.poll_batch`` (fed the prefetched batches by a
stand-in consumer), the compiled job's ``Plan.process``, ``Sink.send`` and ``Sink.flush`` (to a
real topic, one flush per batch as the worker does); and the raw loop's steps. Costs are
main-thread CPU (``time.thread_time``), best of ``repeats``: librdkafka's own threads and any
waiting for the broker are excluded, and so is most of the noise from other work on the machine.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent))

import orjson
from _pipeline_transform import enrich, positive
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeline.executor import InRecord, OutRecord, compile_job
from pipeline.kafka.clients import Sink, Source
from pipeline.loading import load_job
from pipeline.state import MemoryStore

ROOT = Path(__file__).resolve().parents[1]


class _Replay:
    """Stands in for the worker's librdkafka consumer: returns the prefetched batches."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches
        self.i = 0

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        if self.i >= len(self.batches):
            return []
        self.i += 1
        return self.batches[self.i - 1]


def fetch(args: dict[str, Any]) -> list[list[Any]]:
    c = Consumer(
        {
            "bootstrap.servers": args["bootstrap"],
            "group.id": "bench-breakdown",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            "queued.max.messages.kbytes": 32768,
        }
    )
    c.assign(
        [TopicPartition(args["source"], p, OFFSET_BEGINNING) for p in range(args["partitions"])]
    )
    batches: list[list[Any]] = []
    n = 0
    deadline = time.monotonic() + 120
    while n < args["records"] and time.monotonic() < deadline:
        b = [m for m in c.consume(args["batch_size"], 0.5) if m.error() is None]
        if b:
            batches.append(b)
            n += len(b)
    c.close()
    if n < args["records"]:
        raise SystemExit(f"breakdown: fetched {n} of {args['records']} records")
    return batches


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Least main-thread CPU seconds over `repeats` calls, and the last result."""
    low, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.thread_time()
        out = fn()
        low = min(low, time.thread_time() - t0)
    return low, out


def main() -> None:
    args = json.loads(sys.argv[1])
    repeats = int(args.get("repeats", 3))
    batches = fetch(args)
    records = sum(map(len, batches))
    loads, dumps = orjson.loads, orjson.dumps

    # ------------------------------------------------------------------ the raw loop's steps
    def raw_transform() -> list[list[tuple[bytes, bytes]]]:
        out = []
        for batch in batches:
            o = []
            for m in batch:
                if m.error() is not None:
                    raise SystemExit("consumer error")
                ev = loads(m.value())
                if positive(ev):
                    o.append((m.key(), dumps(enrich(ev))))
            out.append(o)
        return out

    t_raw_transform, raw_out = best(raw_transform, repeats)
    producer = Producer(
        {
            "bootstrap.servers": args["bootstrap"],
            "linger.ms": 5,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000,
        }
    )

    def raw_produce() -> tuple[float, float]:
        send = flush = 0.0
        produce, topic = producer.produce, args["raw_topic"]
        for o in raw_out:
            t0 = time.thread_time()
            for k, v in o:
                produce(topic, v, k)
            t1 = time.thread_time()
            producer.flush(60)
            send, flush = send + t1 - t0, flush + time.thread_time() - t1
        return send, flush

    # ------------------------------------------------------------ the paxline worker's steps
    job = load_job("bench/_pipeline_job.py:job", cwd=ROOT)
    plan = compile_job(job)
    stage = plan.stage_for_topic(args["source"])
    src = Source.__new__(Source)  # the real poll_batch, fed the prefetched batches
    src.assigned = {(args["source"], p) for p in range(args["partitions"])}
    src.paused = set()

    def pax_source() -> list[dict[tuple[str, int], list[InRecord]]]:
        src._consumer = _Replay(batches)  # type: ignore[assignment]
        return [src.poll_batch(args["batch_size"], 0.0) for _ in batches]

    t_pax_source, polled = best(pax_source, repeats)
    store = MemoryStore()

    def pax_exec() -> list[list[OutRecord]]:
        out = []
        for by_tp in polled:
            o: list[OutRecord] = []
            for recs in by_tp.values():
                o.extend(plan.process(stage, recs, store).outputs)
            out.append(o)
        return out

    t_pax_exec, pax_out = best(pax_exec, repeats)
    sink = Sink(args["bootstrap"])

    def pax_produce() -> tuple[float, float]:
        send_t = flush_t = 0.0
        send = sink.send
        for o in pax_out:
            t0 = time.thread_time()
            for r in o:
                send(r)
            t1 = time.thread_time()
            sink.flush()
            send_t, flush_t = send_t + t1 - t0, flush_t + time.thread_time() - t1
        return send_t, flush_t

    raw_pp = [raw_produce() for _ in range(repeats)]
    pax_pp = [pax_produce() for _ in range(repeats)]
    r_send, r_flush = min(raw_pp, key=sum)
    p_send, p_flush = min(pax_pp, key=sum)

    # --------------------------------------------------- pieces of the source step, alone
    fields = [
        (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
        for b in batches
        for m in b
    ]

    def inrecord_only() -> None:
        for t, p, o, k, v, ts in fields:
            InRecord(
                topic=t, partition=p, offset=o, key=k, value=v, timestamp_ms=int(ts), headers=()
            )

    def tuple_only() -> None:
        for t, p, o, k, v, ts in fields:
            (t, p, o, k, v, int(ts), ())

    t_inrec, _ = best(inrecord_only, repeats)
    t_tuple, _ = best(tuple_only, repeats)
    outs = [r for o in pax_out for r in o]

    def outrecord_only() -> None:
        for r in outs:
            OutRecord(r.topic, r.key, r.value)

    t_outrec, _ = best(outrecord_only, repeats)

    us = 1e6 / records
    report = {
        "records": records,
        "outputs": len(outs),
        "batches": len(batches),
        "raw_us": {
            "transform (loads, filter, enrich, dumps)": t_raw_transform * us,
            "produce()": r_send * us,
            "flush() per batch": r_flush * us,
        },
        "paxline_us": {
            "Source.poll_batch (InRecord per record)": t_pax_source * us,
            "Plan.process (decode, filter, map, encode, OutRecord)": t_pax_exec * us,
            "Sink.send (wrapper + produce with on_delivery)": p_send * us,
            "Sink.flush per batch (serves 1 delivery callback per record)": p_flush * us,
        },
        "pieces_us": {
            "InRecord(...) construction alone": t_inrec * us,
            "same fields into a plain tuple": t_tuple * us,
            "OutRecord(...) construction alone (per input record)": t_outrec * us,
        },
        "pid": os.getpid(),
    }
    report["raw_total_us"] = sum(report["raw_us"].values())
    report["paxline_total_us"] = sum(report["paxline_us"].values())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
