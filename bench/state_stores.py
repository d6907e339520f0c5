"""State-store throughput: one Redis against a 3-primary Redis Cluster, 2 writer processes
(issue 16). A benchmark, not a test.

Each writer plays a worker owning half of the job's partitions and applies batches the way
the exactly-once store does (`EpochRedisStore.apply`: the epoch-checked Lua script with undo
images, `batch` keys per batch, 1000 distinct keys per partition), as fast as it can, for
`--seconds`. Both deployments run side by side in one run (single first, then cluster, then
single again; the median of the single runs is the reference), and the load average is
printed, because the machine is shared. This measures the state layer only, not a whole
pipeline (Kafka, coordinators): the scaling ratio is an upper bound for what a job gains.

    .venv/bin/python bench/state_stores.py [--seconds 10] [--partitions 12] [--batch 500]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paxline.localstack import redis as redis_launcher
from paxline.localstack import redis_cluster
from pipeline.state import RedisStores, StateKey


def writer(url: str, job: str, parts: list[int], batch: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    stores = RedisStores(url)
    owned = []
    for p in parts:
        s = stores.epoch_store(StateKey(job, "in", p), epoch=1, view="v")
        s.take_over()
        owned.append(s)
    n, offset, deadline = 0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in owned:
            offset += batch
            keys = {f"k{(offset + i) % 1000}": str(offset + i).encode() for i in range(batch)}
            s.apply(keys, {}, end_offset=offset)
            n += batch
    stores.close()
    out.put(n)


def measure(url: str, label: str, partitions: int, batch: int, seconds: float) -> float:
    job = f"bench-{label}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    halves = [list(range(0, partitions, 2)), list(range(1, partitions, 2))]
    procs = [mp.Process(target=writer, args=(url, job, h, batch, seconds, out)) for h in halves]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    rate = total / (time.monotonic() - t0)
    print(f"  {label:8s} {rate:12,.0f} key writes/s  (load {os.getloadavg()[0]:.1f})")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="paxline-bench-stores-") as tmp:
        single = redis_launcher.start(Path(tmp) / "single")
        cluster = redis_cluster.start(Path(tmp) / "cluster", replicas=0)
        try:
            print(f"load average before: {os.getloadavg()}, cpus {os.cpu_count()}")
            a = measure(single.url, "single", args.partitions, args.batch, args.seconds)
            c = measure(cluster.url, "cluster", args.partitions, args.batch, args.seconds)
            b = measure(single.url, "single", args.partitions, args.batch, args.seconds)
        finally:
            redis_launcher.stop(single.data_dir)
            redis_cluster.stop(Path(tmp) / "cluster")
    ref = statistics.median([a, b])
    print(f"cluster / single: {c / ref:.2f}x (2 writers, {args.partitions} partitions, "
          f"batches of {args.batch}); load average after: {os.getloadavg()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
