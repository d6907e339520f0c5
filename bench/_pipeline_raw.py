"""Raw confluent-kafka consume-transform-produce loop: the physical limit for one Python process.

Run by ``bench/pipeline.py`` as ``python -P bench/_pipeline_raw.py '<json args>'``. It uses the
same client settings as the paxline worker (``pipeline/kafka/clients.py``: assign() from the
beginning, idempotent acks=all lz4 producer with linger 5 ms), the same codec (orjson), the same
batch size, and like the worker flushes the producer once per poll round. What it leaves out is
everything a runtime adds: no coordinator, no checkpoints, no dead-letter handling, no per-record
objects, and (unless ``delivery_callback`` is set) no per-record delivery report.

With ``transactional`` set (system ``raw-eos``) it is the exactly-once limit for one process:
one transactional producer, consumer ``read_committed``, a transaction every ``txn_ms`` (100 ms)
or ``txn_records`` input records, each committing the consumed positions of every assigned
partition with ``send_offsets_to_transaction`` - the textbook consume-transform-produce loop.

When every input record has been processed it writes its figures to ``info`` and waits for
SIGTERM, so the benchmark can read its peak RSS.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))

import orjson
from _pipeline_transform import enrich, positive
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

CONSUMER = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_uncommitted",
    "fetch.wait.max.ms": 50,
    "queued.max.messages.kbytes": 32768,
}
PRODUCER = {
    "linger.ms": 5,
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "batch.num.messages": 10000,
    "queue.buffering.max.messages": 200000,
}


def main() -> None:
    args = json.loads(sys.argv[1])
    cconf = {"bootstrap.servers": args["bootstrap"], "group.id": args["group"], **CONSUMER}
    pconf = {"bootstrap.servers": args["bootstrap"], **PRODUCER}
    transactional = bool(args.get("transactional"))
    if transactional:
        cconf["isolation.level"] = "read_committed"
        pconf["transactional.id"] = f"{args['group']}.txn"
        # as the worker's transactional producer (pipeline/kafka/clients.py)
        pconf["retry.backoff.ms"] = 5
        pconf["linger.ms"] = 20
    consumer = Consumer(cconf)
    producer = Producer(pconf)
    txn_s = float(args.get("txn_ms", 100)) / 1000
    txn_records = int(args.get("txn_records", 20_000))
    txns = 0
    src, sink, total = args["source"], args["sink"], int(args["records"])
    batch, timeout = int(args["batch_size"]), float(args["poll_timeout"])
    consumer.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in range(args["partitions"])])

    errors: list[str] = []
    on_delivery = None
    if args.get("delivery_callback"):

        def on_delivery(err, msg):  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(err.str())

    loads, dumps, produce = orjson.loads, orjson.dumps, producer.produce
    seen = out = 0
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
        txn_start, txn_seen = time.monotonic(), 0
    while seen < total:
        # Commit before consuming more: position() must cover only records already produced.
        if (
            transactional
            and txn_seen
            and (txn_seen >= txn_records or time.monotonic() - txn_start >= txn_s)
        ):
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
            )
            producer.commit_transaction(30)
            producer.begin_transaction()
            txns += 1
            txn_start, txn_seen = time.monotonic(), 0
        msgs = consumer.consume(batch, timeout)
        if not msgs:
            continue
        for m in msgs:
            if m.error() is not None:
                raise SystemExit(f"consumer error: {m.error().str()}")
            ev = loads(m.value())
            if positive(ev):
                value = dumps(enrich(ev))
                while True:
                    try:
                        if on_delivery is None:
                            produce(sink, value, m.key())
                        else:
                            produce(sink, value, m.key(), on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
                out += 1
        seen += len(msgs)
        if transactional:
            txn_seen += len(msgs)
            continue  # durable at the transaction's commit, not per round
        left = producer.flush(60)  # outputs durable once per round, as the worker does
        if left or errors:
            raise SystemExit(f"delivery failed: {left} left, errors {errors[:3]}")
    if transactional:
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        txns += 1
    Path(args["info"]).write_text(
        json.dumps(
            {
                "consumed": seen,
                "produced": out,
                "finished_at": time.time(),
                "consumer": CONSUMER,
                "producer": {k: v for k, v in pconf.items() if k != "bootstrap.servers"},
                "batch_size": batch,
                "poll_timeout": timeout,
                "delivery_callback": bool(on_delivery),
                "transactional": transactional,
                "transactions": txns,
                "txn_ms": txn_s * 1000,
                "txn_records": txn_records,
            }
        )
    )
    consumer.close()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
