"""`make demo`: the word-count job on the local stack, from a fresh clone.

Assumes `paxline up` has run (the Makefile does it). Submits examples/wordcount.py:job unless
it exists, produces examples/data/sample.txt (many times over), waits until the agreed
offsets reach the end of every input partition, then prints the top words from the Redis
view and the agreed offsets.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from coordinator.client import CoordinatorClient
from paxline.settings import locate, resolve
from pipeline.kafka import committed_lag, end_offsets
from pipeline.state.redis import view_key

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 200


def main() -> int:
    console = Console()
    ep = resolve()
    client = CoordinatorClient(ep.coordinators, ep.token, timeout=30)
    if not any(j.spec.name == "wordcount" for j in client.jobs()):
        console.print("submitting examples/wordcount.py:job ...")
        done = subprocess.run(
            [sys.executable, "-m", "paxline.cli", "submit", "examples/wordcount.py:job", "--wait"],
            cwd=ROOT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return done.returncode
    lines = (ROOT / "examples/data/sample.txt").read_text().splitlines()
    producer = Producer({"bootstrap.servers": ep.kafka, "linger.ms": 5})
    for _ in range(REPEAT):
        for line in lines:
            producer.produce("text", line.encode())
        producer.poll(0)
    producer.flush(30)
    console.print(f"produced {REPEAT * len(lines)} lines of examples/data/sample.txt to 'text'")

    t0 = time.monotonic()
    with console.status("waiting until every partition's agreed offset reaches its end ..."):
        while True:
            parts = client.offsets("wordcount")
            ends = end_offsets(ep.kafka, [(p.topic, p.partition) for p in parts])
            starts = {(p.topic, p.partition): p.offset for p in parts}
            # Caught up = nothing left to read (what `paxline offsets` calls lag 0).
            if not any(committed_lag(ep.kafka, starts, ends, read_committed=False).values()):
                break
            if time.monotonic() - t0 > 180:
                console.print("[red]not caught up after 180 s; see .paxline/logs/[/red]")
                return 1
            time.sleep(0.3)
    console.print(f"processed in {time.monotonic() - t0:.1f}s")

    r = redis.Redis.from_url(ep.redis)
    view = {
        k.decode(): orjson.loads(v)
        for k, v in r.hgetall(view_key("wordcount", "wordcount")).items()
    }
    console.print(f"top words (Redis view {view_key('wordcount', 'wordcount')}):")
    top = Table()
    top.add_column("word")
    top.add_column("count", justify="right")
    for word, count in sorted(view.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
        top.add_row(word, str(count))
    console.print(top)
    subprocess.run(
        [sys.executable, "-m", "paxline.cli", "offsets", "wordcount"], cwd=ROOT, check=False
    )
    px = Path(sys.executable).parent / "paxline"
    console.print(
        f"look further, from any directory:  {px} status | cluster status | jobs | "
        f"offsets wordcount\n"
        f"dashboard at {ep.coordinators[0]}/ | logs in {locate().path / 'logs'}\n"
        "stop:          make demo-stop   (or paxline down)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
