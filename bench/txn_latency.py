"""Latency of one exactly-once transaction with paxline's producer settings vs librdkafka's
default `retry.backoff.ms` (a benchmark, not a test).

Each transaction is what the worker's step (b) does: begin, produce a batch of outputs,
`send_offsets_to_transaction`, `commit_transaction`, through `pipeline.kafka.TransactionalSink`.
Back to back, the next transaction's AddOffsetsToTxn meets CONCURRENT_TRANSACTIONS while the
broker still writes the previous markers, and librdkafka waits `retry.backoff.ms` before the
retry; this script shows what that wait costs. Settings alternate round by round against
one real broker started here, so both see the same machine state.

    .venv/bin/python bench/txn_latency.py --transactions 200 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from paxline.localstack import kafka as kafka_stack  # noqa: E402
from pipeline.executor.records import OutRecord  # noqa: E402
from pipeline.kafka import create_topics  # noqa: E402
from pipeline.kafka.clients import Source, TransactionalSink  # noqa: E402

# name -> producer settings on top of TransactionalSink's own
SETTINGS: dict[str, dict[str, object]] = {
    "librdkafka default (100 ms)": {"retry.backoff.ms": 100},
    "paxline (5 ms)": {},
}


def one_round(
    bootstrap: str, name: str, extra: dict[str, object], n: int, batch: int
) -> list[float]:
    source = Source(bootstrap, group_id="txn-bench", isolation="read_committed")
    sink = TransactionalSink(bootstrap, f"txn-bench.{name.split()[0]}", extra=extra)
    sink.init()
    meta = source.group_metadata()
    outputs = [OutRecord("txn-bench-out", b"k%d" % i, b"v" * 100) for i in range(batch)]
    times: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        sink.begin(outputs, [])
        sink.commit(("txn-bench-in", 0, i + 1), meta)
        times.append(time.perf_counter() - t0)
    source.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=200, help="per setting and round")
    ap.add_argument("--batch", type=int, default=100, help="records per transaction")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="txn-bench-") as tmp:
        broker = kafka_stack.start(Path(tmp) / "kafka")
        try:
            create_topics(broker.bootstrap, {"txn-bench-in": 1, "txn-bench-out": 1})
            samples: dict[str, list[float]] = {name: [] for name in SETTINGS}
            for r in range(args.rounds):
                for name, extra in SETTINGS.items():
                    t = one_round(broker.bootstrap, name, extra, args.transactions, args.batch)
                    samples[name].extend(t)
                    print(f"round {r + 1} {name}: median {statistics.median(t) * 1e3:.1f} ms")
        finally:
            kafka_stack.stop(Path(tmp) / "kafka")
    print(f"\nKafka {broker.version}, {args.transactions} x {args.rounds} transactions of "
          f"{args.batch} records per setting")  # fmt: skip
    base = statistics.median(samples["librdkafka default (100 ms)"])
    for name, t in samples.items():
        t.sort()
        med = statistics.median(t)
        p90 = t[int(len(t) * 0.9)]
        print(f"{name:28s} median {med * 1e3:6.1f} ms  p90 {p90 * 1e3:6.1f} ms  "
              f"{1 / med:6.1f} txn/s  speed-up {base / med:4.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
