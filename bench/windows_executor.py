"""The pure executor's cost per window kind (issue 18): records/s of one windowed-count stage
over the same keyed input, in process (no Kafka, no Redis: state in a dict), so the figures
compare window kinds with each other, not with other systems.

    .venv/bin/python bench/windows_executor.py [records]
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from pipeline.executor import InRecord, compile_job
from pipeline.job import Job, hopping, session, sliding, tumbling
from tests.pipeline.executor.memory_state import MemoryState


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rng = random.Random(1)
    recs = []
    for i in range(n):
        user = f"user-{rng.randrange(1000)}"
        value = {"user": user, "ts": i * 5}
        recs.append(InRecord("r", 0, i, user.encode(), msgspec.msgpack.encode([i * 5, value]), 0))
    print(f"{n} records, 1000 keys, 5 ms apart; load average {os.getloadavg()[0]:.1f}")
    for name, spec in (
        ("tumbling(10s)", tumbling(10)),
        ("hopping(10s, hop=2s)", hopping(10, hop=2)),
        ("sliding(10s)", sliding(10)),
        ("session(gap=10s)", session(gap=10)),
    ):
        job = (
            Job("b")
            .source("in", partitions=1, value="json")
            .key_by(lambda v: v["user"])
            .window(spec, timestamp=lambda v: v["ts"])
            .count()
            .to_kafka("out")
        )
        plan = compile_job(job)
        state = MemoryState()
        out = 0
        start = time.perf_counter()
        for lo in range(0, n, 5000):
            res = plan.process(1, recs[lo : lo + 5000], state)
            state.apply(res)
            out += len(res.outputs)
        took = time.perf_counter() - start
        print(f"{name:22s} {n / took:>10,.0f} records/s  ({out} windows emitted)")


if __name__ == "__main__":
    main()
