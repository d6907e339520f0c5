"""Throughput of one paxline worker vs a raw loop, Quix Streams and faust (a benchmark, not a test).

One stateless job (parse JSON, filter, enrich, produce JSON) over N preloaded keyed records of
~100 bytes on 4 partitions, run by ONE process of each system against the same real Kafka
broker, in the same run:

* ``raw``     a confluent-kafka consume-transform-produce loop with the runtime's codec
              (orjson) and client settings: the physical limit for one Python process;
* ``paxline`` one ``paxline worker run`` process (3 coordinators, Redis, the job submitted
              beforehand);
* ``quix``    Quix Streams (``Application`` + ``StreamingDataFrame``);
* ``faust``   faust-streaming (one agent); slow, so by default it is timed on the first
              ``--faust-records`` records only and the rate is labelled as extrapolated.

Each system reads the same input topic from offset 0 and writes its own output topic. The clock
starts when the system's process is spawned and stops when every output is readable (the sum of
the output topic's high watermarks reaches the expected count, polled every 20 ms from this
process); then the output topic is read in full and checked: the count, no duplicate ids (each
output carries its input's id), and exactly the ids of the inputs that pass the filter. Peak RSS
is the process's VmHWM, read just before it is stopped. Systems run in turn for ``--rounds``
rounds (median shown) after one untimed raw-loop pass that warms the broker up; before each, the
harness waits for a quiet machine (``--quiet-wait``) and it records the CPU used meanwhile by
the broker, the coordinators and processes outside the benchmark (the box may be shared). At
the end ``_pipeline_breakdown.py`` times the per-record main-thread CPU of each step of the raw
loop and of the worker (``--no-breakdown`` skips it).

    make bench-venv
    .venv-bench/bin/python bench/pipeline.py --rounds 5 --quiet-wait 180 \\
        --json /tmp/pipeline-bench.json

Needs the ``bench`` extra (quixstreams, faust-streaming) in the venv, Java for the broker and
``redis-server``; a peer that is not installed is skipped with a note. See
docs/benchmarks-pipeline.md for figures and method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named like the `pipeline` package: keep its folder off the front of sys.path
# (where running it as a script puts it), so `import pipeline` finds the package.
_BENCH = Path(__file__).resolve().parent
_ROOT = _BENCH.parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH]
sys.path.insert(0, str(_ROOT))
sys.path.append(str(_BENCH))

import orjson  # noqa: E402
from _pipeline_transform import make_input, positive  # noqa: E402
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
    libversion,
)
from confluent_kafka import __version__ as _ck_version  # noqa: E402

from coordinator.client import CoordinatorClient  # noqa: E402
from paxline.localstack import kafka as kafka_stack  # noqa: E402
from paxline.localstack import redis as redis_stack  # noqa: E402
from paxline.localstack import redis_cluster  # noqa: E402
from paxline.localstack.common import read_pid  # noqa: E402
from paxline.localstack.coordinators import LocalCluster  # noqa: E402
from pipeline.kafka import create_topics  # noqa: E402

SOURCE = "bench-in"
SYSTEMS = ("raw", "paxline", "quix", "faust")
# raw-dr: the raw loop with a per-record delivery callback; raw-eos: the raw transactional
# loop (the exactly-once limit); *-eos: exactly-once; *-count: the stateful job (keyed count,
# paxline's state in Redis, Quix's in RocksDB).
OPTIONAL = (
    "raw-dr",
    "raw-eos",
    "paxline-eos",
    "quix-eos",
    "paxline-count",
    "paxline-eos-count",
    "quix-count",
    "quix-eos-count",
    # issue 16: the count job with Job(changelog=False), to price the changelog
    "paxline-count-nochangelog",
    "paxline-eos-count-nochangelog",
    # issue 16: the count job with its state on a 3-primary Redis Cluster instead of one
    # Redis (run it with --workers 2 next to paxline-count: the scale-out ratio)
    "paxline-count-cluster",
    "paxline-eos-count-cluster",
)
TRANSACTIONAL = ("raw-eos", "paxline-eos", "paxline-eos-count", "quix-eos", "quix-eos-count",
                 "paxline-eos-count-nochangelog", "paxline-eos-count-cluster")  # fmt: skip
PAXLINE = ("paxline", "paxline-eos", "paxline-count", "paxline-eos-count",
           "paxline-count-nochangelog", "paxline-eos-count-nochangelog",
           "paxline-count-cluster", "paxline-eos-count-cluster")  # fmt: skip
QUIX = ("quix", "quix-eos", "quix-count", "quix-eos-count")
PY = sys.executable

# Figures measured on this machine class with an emulated broker (from the brief), for context.
REFERENCE = {"raw": 209_000.0, "quix": 30_000.0, "bytewax": 23_000.0, "faust": 1_700.0}
TARGET_RATIO = 0.9  # at-least-once vs the raw loop (issue 15)
TARGET_EOS_RATIO = 0.6  # exactly-once vs the raw loop
TARGET_EOS_RAW_EOS_RATIO = 0.8  # exactly-once vs the raw transactional loop
TARGET_RSS_MB = 250.0
TARGET_FIRST_OUTPUT_S = 1.0
TARGET_CHANGELOG_RATIO = 0.85  # issue 16: the changelog costs at most 15 % records/s


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- infrastructure


class Stack:
    """Kafka, Redis and 3 coordinators under one work directory, stopped in reverse."""

    def __init__(self, workdir: Path, redis_cluster: bool = False) -> None:
        self.workdir = workdir
        self.cluster: LocalCluster | None = None
        self.bootstrap = ""
        self.redis_url = ""
        self.want_redis_cluster = redis_cluster
        self.redis_cluster_url = ""
        self.redis_cluster_pids: list[int] = []
        self.kafka_version = ""
        self.kafka_pid = 0
        self.redis_pid = 0
        self._stops: list[Callable[[], Any]] = []

    def start(self) -> None:
        t0 = time.monotonic()
        b = kafka_stack.start(self.workdir / "kafka")
        self._stops.append(lambda: kafka_stack.stop(self.workdir / "kafka"))
        self.bootstrap, self.kafka_version, self.kafka_pid = b.bootstrap, b.version, b.pid
        log(f"kafka {b.version} on {b.bootstrap} ({b.startup_seconds:.1f}s)")
        r = redis_stack.start(self.workdir / "redis")
        self._stops.append(lambda: redis_stack.stop(self.workdir / "redis"))
        self.redis_url, self.redis_pid = r.url, r.pid
        if self.want_redis_cluster:  # *-cluster systems: 3 primaries, no replicas (CPU)
            g = redis_cluster.start(self.workdir / "redis-cluster", replicas=0)
            self._stops.append(lambda: redis_cluster.stop(self.workdir / "redis-cluster"))
            self.redis_cluster_url = g.url
            pids = (read_pid(g.node_dir(i) / "redis.pid") for i in range(len(g.ports)))
            self.redis_cluster_pids = [p for p in pids if p is not None]
            log(f"redis cluster on {g.url}")
        self.cluster = LocalCluster(
            self.workdir / "coord", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "30"}
        )
        self._stops.append(self.cluster.stop)
        self.cluster.start()
        log(
            f"redis on {r.url}; coordinators {', '.join(self.cluster.endpoints)} "
            f"(stack up in {time.monotonic() - t0:.1f}s)"
        )

    def pids(self) -> dict[str, list[int]]:
        coords = [
            n.proc.pid
            for n in (self.cluster.nodes.values() if self.cluster else [])
            if n.proc is not None
        ]
        return {
            "broker": [self.kafka_pid],
            "coordinators+redis": [*coords, self.redis_pid, *self.redis_cluster_pids],
        }

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()


# ------------------------------------------------------------------------------- the input


def preload(bootstrap: str, topic: str, records: int, seed: int) -> dict[str, Any]:
    """Write the input once; return the ids that pass the filter (the expected outputs).

    Uncompressed: faust's aiokafka cannot read lz4 batches without the optional `lz4`
    package, which the `bench` extra does not install; all systems read the same bytes."""
    rng = random.Random(seed)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "none",
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    expected: list[int] = []
    size = 0
    t0 = time.monotonic()
    for i in range(records):
        key, value = make_input(i, rng)
        raw = orjson.dumps(value)
        size += len(raw)
        if positive(value):
            expected.append(i)
        while True:
            try:
                producer.produce(topic, raw, key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise SystemExit(f"preload: {left} records not delivered")
    log(
        f"preloaded {records} records ({size / records:.0f} B/value avg) into {topic} "
        f"in {time.monotonic() - t0:.1f}s; {len(expected)} pass the filter"
    )
    return {"expected": expected, "avg_value_bytes": size / records}


# ------------------------------------------------------------------------- measurement


class Watermarks:
    """Sum of an output topic's high watermarks: records readable right now (acks=all,
    single broker, no transactions: the high watermark is what a consumer can read)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-hw-{topic}",
                "enable.auto.commit": False,
            }
        )
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def highs(self, retry_for: float = 30.0) -> list[int]:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return [
                    int(self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1])
                    for tp in self.tps
                ]
            except KafkaException:  # e.g. a fresh topic whose leader is not known yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.consumer.close()


class Reader:
    """Reads an output topic from the start (after the timed part), collecting input ids."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-verify-{topic}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                # EOF events carry the end offset: transactional topics end in commit
                # markers, which no record's offset ever reaches.
                "enable.partition.eof": True,
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.pos = [0] * partitions
        self.ids: set[int] = set()
        self.read = 0
        self.bad = 0

    def read_until(self, highs: list[int], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while any(p < h for p, h in zip(self.pos, highs, strict=True)):
            if time.monotonic() > deadline:
                raise SystemExit(f"verifier: could not read up to {highs} (at {self.pos})")
            for m in self.consumer.consume(10000, 0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        self.pos[m.partition()] = max(self.pos[m.partition()], m.offset())
                    continue
                self.pos[m.partition()] = m.offset() + 1
                self.read += 1
                try:
                    self.ids.add(int(orjson.loads(m.value())["id"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.bad += 1

    def close(self) -> None:
        self.consumer.close()


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a live process (all its threads); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def box_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + vals[4]
    return (sum(vals[:8]) - idle) / tick, sum(vals[:8]) / tick


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def wait_quiet(max_wait: float, busy_below: float = 0.2) -> float:
    """Wait (up to `max_wait` s) for a 1-s window in which the machine is less than
    `busy_below` busy: other work on this shared box skews a throughput figure. Returns the
    last window's busy share."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = box_cpu()
        time.sleep(1.0)
        b1, t1 = box_cpu()
        busy = (b1 - b0) / max(t1 - t0, 1e-9)
        if busy < busy_below or time.monotonic() > deadline:
            return busy


def procs_stats(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    each = [proc_stats(p.pid) for p in procs]
    return {
        "peak_rss_mb": max(e["peak_rss_mb"] for e in each),
        "rss_mb": sum(e["rss_mb"] for e in each),
        "cpu_s": sum(e["cpu_s"] for e in each),
    }


def proc_stats(pid: int) -> dict[str, float]:
    """Peak RSS (VmHWM) and current RSS in MB, and CPU seconds (user+sys) of one process."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
    return {
        "peak_rss_mb": out.get("VmHWM", float("nan")),
        "rss_mb": out.get("VmRSS", float("nan")),
        "cpu_s": out.get("cpu_s", float("nan")),
    }


def measure(
    name: str,
    cmds: list[list[str]],
    *,
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    bootstrap: str,
    out_topic: str,
    partitions: int,
    expected: set[int],
    goal: int,
    timeout: float,
    spy: str = "",
    others: dict[str, list[int]] | None = None,
    transactional: bool = False,
) -> dict[str, Any]:
    """Spawn one system (several worker processes for `--workers`), time it until `goal`
    distinct expected ids are readable in `out_topic`, verify, read its peak RSS, stop it.
    CPU is the processes' sum, peak RSS the largest one's."""
    hw = Watermarks(bootstrap, out_topic, partitions)
    if sum(hw.highs()) != 0:
        raise SystemExit(f"{out_topic} is not empty before {name} starts")
    reader: Reader | None = None
    target = goal
    first = None
    highs = [0] * partitions
    timed_out = False
    others = others or {}
    with open(log_path, "ab") as lf:
        other0 = {k: sum(map(cpu_seconds, v)) for k, v in others.items()}
        own0, (box0, tot0) = own_cpu(), box_cpu()

        def snapshot() -> tuple[dict[str, float], dict[str, Any]]:
            stats = procs_stats(procs)
            box1, tot1 = box_cpu()
            cpu_other = {k: sum(map(cpu_seconds, v)) - other0[k] for k, v in others.items()}
            cpu_other["bench harness"] = own_cpu() - own0
            busy = box1 - box0
            cpu_other["foreign (not this benchmark)"] = max(
                0.0, busy - stats["cpu_s"] - sum(cpu_other.values())
            )
            return stats, {
                "box_busy_share": busy / max(tot1 - tot0, 1e-9),
                "cpu_others_s": cpu_other,
            }

        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=lf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            for cmd in cmds
        ]
        proc = procs[0]
        spy_proc = None
        if spy:  # sampling profile (py-spy attached, non-blocking): CPU only, idle excluded
            spy_proc = subprocess.Popen(
                [
                    str(Path(PY).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "-o",
                    spy,
                ],
                stdout=lf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            while True:
                highs = hw.highs()
                now = time.monotonic()
                total = sum(highs)
                if first is None and total > 0:
                    first = now - t0
                if total >= target:
                    elapsed = now - t0
                    snap = snapshot()  # CPU counters at the end of the timed part
                    if reader is None:
                        reader = Reader(bootstrap, out_topic, partitions)
                    reader.read_until(highs)
                    got = len(reader.ids & expected)
                    if got >= goal:
                        if transactional:
                            # The high watermark counts records of open transactions too:
                            # the outputs are readable only once read_committed saw them.
                            elapsed = time.monotonic() - t0
                            snap = snapshot()
                        break
                    target = reader.read + (goal - got)  # duplicates or strays: wait for more
                for p in procs:
                    if p.poll() is not None:
                        raise SystemExit(f"{name} exited with {p.returncode}; see {log_path}")
                if now - t0 > timeout:
                    timed_out = True
                    elapsed = now - t0
                    snap = snapshot()
                    break
                time.sleep(0.02)
            stats, box = snap
            stats["peak_rss_mb"] = procs_stats(procs)["peak_rss_mb"]  # the peak, at the end
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
            if spy_proc is not None:
                try:
                    spy_proc.wait(60)
                except subprocess.TimeoutExpired:
                    spy_proc.send_signal(signal.SIGINT)
                    spy_proc.wait(30)
            hw.close()
    if reader is None:
        reader = Reader(bootstrap, out_topic, partitions)
    if timed_out:
        reader.read_until(highs)
    reader.close()
    valid = reader.ids & expected
    res = {
        "system": name,
        "seconds": elapsed,
        "first_output_s": first,
        "outputs_read": reader.read,
        "distinct_ids": len(reader.ids),
        "valid_ids": len(valid),
        "duplicates": reader.read - len(reader.ids) - reader.bad,
        "unexpected_ids": len(reader.ids - expected),
        "undecodable": reader.bad,
        "goal": goal,
        "timed_out": timed_out,
        **stats,
        **box,
    }
    # At-least-once with several workers: a partition that moves while the second worker
    # joins replays from its checkpoint, so duplicates are allowed there (and reported).
    dup_ok = len(cmds) > 1 and not transactional
    res["ok"] = (
        not timed_out
        and (res["duplicates"] == 0 or dup_ok)
        and res["unexpected_ids"] == 0
        and res["undecodable"] == 0
        and len(valid) >= goal
    )
    return res


# ------------------------------------------------------------------------------- systems


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.pop("PYTHONSTARTUP", None)
    return env


def paxline_config() -> dict[str, Any]:
    """The client settings the worker really uses, captured from pipeline/kafka/clients.py by
    swapping the librdkafka constructors for recorders (nothing connects)."""
    import dataclasses

    import pipeline.kafka.clients as clients
    from pipeline.worker import WorkerConfig

    seen: dict[str, dict[str, Any]] = {}

    def recorder(kind: str) -> Any:
        return lambda conf: seen.setdefault(kind, dict(conf))

    real = clients.Consumer, clients.Producer
    clients.Consumer, clients.Producer = recorder("consumer"), recorder("producer")  # type: ignore[assignment,misc]
    try:
        clients.Source("<bootstrap>", group_id="paxline.worker.<id>")
        clients.Sink("<bootstrap>")
    finally:
        clients.Consumer, clients.Producer = real  # type: ignore[misc]
    worker = {
        f.name: f.default
        for f in dataclasses.fields(WorkerConfig)
        if f.default is not dataclasses.MISSING and f.name not in ("token",)
    }
    for conf in seen.values():
        conf.pop("bootstrap.servers", None)
    return {"consumer": seen.get("consumer"), "producer": seen.get("producer"), "worker": worker}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS + OPTIONAL:
            raise SystemExit(f"unknown system {s!r}; choose from {', '.join(SYSTEMS + OPTIONAL)}")
    skipped: dict[str, str] = {}
    for s in list(systems):
        mod = "quixstreams" if s in QUIX else "faust" if s == "faust" else ""
        if mod and not installed(mod):
            skipped[s] = f"{mod} not installed (make bench-venv)"
            systems.remove(s)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="paxline-pipeline-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    stack = Stack(workdir, redis_cluster=any(s.endswith("-cluster") for s in systems))
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    configs: dict[str, Any] = {}
    breakdown: dict[str, Any] | None = None
    try:
        stack.start()
        assert stack.cluster is not None
        bootstrap = stack.bootstrap
        create_topics(bootstrap, {SOURCE: args.partitions})
        loaded = preload(bootstrap, SOURCE, args.records, args.seed)
        expected_all: list[int] = loaded["expected"]
        expected = set(expected_all)
        env = base_env()
        # Round 0 is an untimed warm-up (one raw-loop pass): the first pass over the input
        # otherwise meets a cold broker (JIT, page cache) and is ~30% slower.
        for rnd in range(0 if args.warmup else 1, args.rounds + 1):
            for name in systems if rnd else ["raw"]:
                out_topic = f"bench-out-{name}-{rnd}"
                create_topics(bootstrap, {out_topic: args.partitions})
                info = workdir / f"{name}-{rnd}.info.json"
                goal = len(expected)
                timeout = args.timeout
                common = {
                    "bootstrap": bootstrap,
                    "source": SOURCE,
                    "sink": out_topic,
                    "partitions": args.partitions,
                    "info": str(info),
                    "group": f"bench-{name}-{rnd}",
                    "state_dir": str(workdir / f"{name}-{rnd}.state"),
                }
                if name in ("raw", "raw-dr", "raw-eos"):
                    a = {
                        **common,
                        "records": args.records,
                        "batch_size": args.batch_size,
                        "poll_timeout": 0.05,
                        "delivery_callback": name == "raw-dr",
                        "transactional": name == "raw-eos",
                        "txn_ms": args.txn_ms,
                        "txn_records": args.txn_records,
                    }
                    cmd = [PY, "-P", str(_BENCH / "_pipeline_raw.py"), json.dumps(a)]
                    penv = env
                elif name in PAXLINE:
                    guarantee = "exactly-once" if "-eos" in name else "at-least-once"
                    job = f"bench-enrich-{name}-{rnd}"
                    penv = {
                        **env,
                        "PAXLINE_COORDINATORS": ",".join(stack.cluster.endpoints),
                        "PAXLINE_API_TOKEN": stack.cluster.token,
                        "PAXLINE_KAFKA": bootstrap,
                        "PAXLINE_REDIS": stack.redis_cluster_url
                        if name.endswith("-cluster")
                        else stack.redis_url,
                        "BENCH_PIPELINE_JOB": job,
                        "BENCH_PIPELINE_SOURCE": SOURCE,
                        "BENCH_PIPELINE_SINK": out_topic,
                        "BENCH_PIPELINE_PARTITIONS": str(args.partitions),
                        "BENCH_PIPELINE_GUARANTEE": guarantee,
                        "BENCH_PIPELINE_STATEFUL": "1" if "-count" in name else "0",
                        "BENCH_PIPELINE_CHANGELOG": "0" if name.endswith("-nochangelog") else "1",
                    }
                    entry = "bench/_pipeline_job.py:job"
                    sub = subprocess.run(
                        [PY, "-m", "paxline.cli", "submit", entry],
                        cwd=_ROOT,
                        # the CLI's interactive 3 s budget is too short on a loaded machine
                        env={**penv, "PAXLINE_TIMEOUT": "60"},
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if sub.returncode != 0:
                        raise SystemExit(f"submit failed: {sub.stdout}{sub.stderr}")
                    cmds = [
                        [
                            PY,
                            "-m",
                            "paxline.cli",
                            "worker",
                            "run",
                            "--id",
                            f"bench-{name}-{rnd}" + (f"-w{w}" if args.workers > 1 else ""),
                            "--batch-size",
                            str(args.batch_size),
                        ]
                        for w in range(1, args.workers + 1)
                    ]
                    cmd = cmds[0]
                    if args.profile_worker:  # figures of a profiled run are not comparable
                        prof = (
                            f"{args.profile_worker}.{rnd}"
                            if args.rounds > 1
                            else args.profile_worker
                        )
                        cmd[1:1] = ["-m", "cProfile", "-o", prof]
                    configs[name] = {
                        "entrypoint": entry,
                        "guarantee": guarantee,
                        "cli": " ".join(cmd[1:]),
                        **paxline_config(),
                    }
                elif name in QUIX:
                    a = {
                        **common,
                        "guarantee": "exactly-once" if "-eos" in name else "at-least-once",
                        "stateful": name.endswith("-count"),
                    }
                    cmd = [PY, "-P", str(_BENCH / "_pipeline_quix.py"), json.dumps(a)]
                    penv = env
                else:  # faust
                    cmd = [PY, "-P", str(_BENCH / "_pipeline_faust.py"), json.dumps(common)]
                    penv = env
                    if args.faust_records < args.records:
                        goal = round(len(expected) * args.faust_records / args.records)
                    timeout = args.faust_timeout
                busy = wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else float("nan")
                log(f"round {rnd}: {name} (machine {busy:.0%} busy just before) ...")
                res = measure(
                    name,
                    cmds if name in PAXLINE else [cmd],
                    env=penv,
                    cwd=_ROOT,
                    log_path=logs / f"{name}-{rnd}.log",
                    bootstrap=bootstrap,
                    out_topic=out_topic,
                    partitions=args.partitions,
                    expected=expected,
                    goal=goal,
                    timeout=timeout,
                    spy=f"{args.pyspy_worker}.{name}"
                    if args.pyspy_worker and name.startswith("paxline")
                    else "",
                    others=stack.pids(),
                    transactional=name in TRANSACTIONAL,
                )
                res["round"] = rnd
                if rnd == 0:
                    log(f"  warm-up pass (not counted): {res['seconds']:.2f}s")
                    continue
                # Input records per second. A partial run (faust capped or timed out) covers
                # valid_ids outputs, i.e. valid_ids / pass-rate inputs: extrapolated.
                covered = args.records * res["valid_ids"] / len(expected)
                res["input_records"] = round(covered)
                res["partial"] = res["valid_ids"] < len(expected)
                res["records_per_s"] = covered / res["seconds"] if res["seconds"] else 0.0
                # Excluding start-up (spawn to first output): the processing rate proper.
                busy_s = res["seconds"] - (res["first_output_s"] or 0.0)
                res["after_first_per_s"] = covered / busy_s if busy_s > 0 else 0.0
                res["cpu_us_per_record"] = res["cpu_s"] * 1e6 / covered if covered else 0.0
                if name in PAXLINE:
                    with (
                        contextlib.suppress(Exception),
                        CoordinatorClient(stack.cluster.endpoints, stack.cluster.token) as client,
                    ):
                        client.cancel_job(f"bench-enrich-{name}-{rnd}")
                if info.exists() and name not in PAXLINE:
                    configs.setdefault(name, json.loads(info.read_text()))
                results.append(res)
                log(
                    f"  {name}: {res['records_per_s']:,.0f} rec/s in {res['seconds']:.2f}s "
                    f"(first output {res['first_output_s'] or float('nan'):.2f}s), "
                    f"peak RSS {res['peak_rss_mb']:.0f} MB, CPU {res['cpu_s']:.1f}s; "
                    + ", ".join(f"{k} {v:.1f}s" for k, v in res["cpu_others_s"].items())
                    + f"; machine {res['box_busy_share']:.0%} busy; "
                    f"{'ok' if res['ok'] else 'NOT OK'}"
                )
        if args.breakdown:
            breakdown = run_breakdown(args, bootstrap, env)
    finally:
        stack.stop()
    return {
        "records": args.records,
        "partitions": args.partitions,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "rounds": args.rounds,
        "expected_outputs": len(expected_all) if results else None,
        "avg_value_bytes": loaded["avg_value_bytes"] if results else None,
        "results": results,
        "configs": configs,
        "breakdown": breakdown,
        "skipped": skipped,
        "duration_s": time.monotonic() - started,
        "workdir": str(workdir),
        "machine": machine(),
        "kafka": stack.kafka_version,
    }


def run_breakdown(args: argparse.Namespace, bootstrap: str, env: dict[str, str]) -> dict[str, Any]:
    """Per-record main-thread CPU of each step, raw loop vs worker (_pipeline_breakdown.py)."""
    create_topics(
        bootstrap,
        {"bench-breakdown-raw": args.partitions, "bench-breakdown-paxline": args.partitions},
    )
    a = {
        "bootstrap": bootstrap,
        "source": SOURCE,
        "partitions": args.partitions,
        "records": args.records,
        "batch_size": args.batch_size,
        "repeats": 3,
        "raw_topic": "bench-breakdown-raw",
    }
    log("per-record CPU breakdown (raw loop vs worker steps) ...")
    proc = subprocess.run(
        [PY, "-P", str(_BENCH / "_pipeline_breakdown.py"), json.dumps(a)],
        cwd=_ROOT,
        env={
            **env,
            "BENCH_PIPELINE_SOURCE": SOURCE,
            "BENCH_PIPELINE_SINK": "bench-breakdown-paxline",
            "BENCH_PIPELINE_PARTITIONS": str(args.partitions),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        log(f"breakdown failed: {proc.stderr[-2000:]}")
        return {"error": proc.stderr[-2000:]}
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "confluent_kafka": _ck_version,
        "librdkafka": libversion()[0],
        "platform": platform.platform(),
    }


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Median per system over rounds (by records/s) and the target verdicts."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in report["results"]:
        by.setdefault(r["system"], []).append(r)
    med: dict[str, dict[str, Any]] = {}
    for name, rows in by.items():
        rows = sorted(rows, key=lambda r: r["records_per_s"])
        m = dict(rows[(len(rows) - 1) // 2])
        m["all_rates"] = [round(r["records_per_s"]) for r in by[name]]
        m["ok"] = all(r["ok"] for r in rows)
        m["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows)
        med[name] = m
    raw = med.get("raw", {}).get("records_per_s")
    for m in med.values():
        m["ratio"] = m["records_per_s"] / raw if raw else None
    verdict: dict[str, Any] = {}

    def rate(name: str) -> float | None:
        m = med.get(name)
        return m["records_per_s"] if m is not None else None

    def ratio_target(key: str, sys_: str, ref: str, target: float, label: str) -> None:
        mine, theirs = rate(sys_), rate(ref)
        if mine is None or not theirs:
            return
        value = mine / theirs
        verdict[key] = {
            "label": f"{label} >= {target}x {ref}",
            "text": f"{value:.2f}x ({mine:,.0f}/s vs {theirs:,.0f}/s)",
            "value": value,
            "target": target,
            "met": value >= target and med[sys_]["ok"],
        }

    ratio_target("ratio_vs_raw", "paxline", "raw", TARGET_RATIO, "paxline at-least-once")
    ratio_target("eos_ratio_vs_raw", "paxline-eos", "raw", TARGET_EOS_RATIO, "paxline exactly-once")
    ratio_target("eos_ratio_vs_raw_eos", "paxline-eos", "raw-eos", TARGET_EOS_RAW_EOS_RATIO,
                 "paxline exactly-once")  # fmt: skip
    # issue 16: the count job with its changelog against the same job without one
    ratio_target("changelog_cost", "paxline-count", "paxline-count-nochangelog",
                 TARGET_CHANGELOG_RATIO, "paxline-count with changelog")  # fmt: skip
    ratio_target("eos_changelog_cost", "paxline-eos-count", "paxline-eos-count-nochangelog",
                 TARGET_CHANGELOG_RATIO, "paxline-eos-count with changelog")  # fmt: skip
    # issue 16: the same job, state on a 3-primary Redis Cluster against one Redis (no
    # target in the issue: the scale-out ratio is reported)
    for mine, theirs in (("paxline-count-cluster", "paxline-count"),
                         ("paxline-eos-count-cluster", "paxline-eos-count")):  # fmt: skip
        if rate(mine) is not None and rate(theirs):
            r = (rate(mine) or 0.0) / (rate(theirs) or 1.0)
            workers = report.get("workers", 1)
            verdict[f"scaleout_{mine}"] = {
                "label": f"{mine} vs {theirs} ({workers} workers)",
                "text": f"{r:.2f}x ({rate(mine):,.0f}/s vs {rate(theirs):,.0f}/s)",
                "value": r,
                "met": None,
            }
    for mine, theirs in zip(PAXLINE[: len(QUIX)], QUIX, strict=True):
        if rate(mine) is not None and rate(theirs) is not None:
            r = (rate(mine) or 0.0) / (rate(theirs) or 1.0)
            verdict[f"ahead_{mine}"] = {
                "label": f"{mine} ahead of {theirs}",
                "text": f"{r:.2f}x ({rate(mine):,.0f}/s vs {rate(theirs):,.0f}/s)",
                "value": r,
                "met": r > 1.0 and med[mine]["ok"],
            }
    if rate("paxline") is not None and rate("faust") is not None:
        r = (rate("paxline") or 0.0) / (rate("faust") or 1.0)
        verdict["ahead_faust"] = {"label": "paxline ahead of faust", "value": r,
                                  "text": f"{r:.1f}x", "met": r > 1.0}  # fmt: skip
    for name in PAXLINE:
        pm = med.get(name)
        if pm is None:
            continue
        verdict[f"rss_{name}"] = {
            "label": f"{name} worker peak RSS < {TARGET_RSS_MB:.0f} MB",
            "text": f"{pm['peak_rss_mb']:.0f} MB",
            "value": pm["peak_rss_mb"],
            "met": pm["peak_rss_mb"] < TARGET_RSS_MB,
        }
        firsts = [r["first_output_s"] for r in by[name] if r["first_output_s"] is not None]
        if firsts:
            first = statistics.median(firsts)
            verdict[f"first_{name}"] = {
                "label": f"{name} first output < {TARGET_FIRST_OUTPUT_S:.0f} s after spawn",
                "text": f"{first:.2f} s (median over rounds)",
                "value": first,
                "met": first < TARGET_FIRST_OUTPUT_S,
            }
        verdict[f"correct_{name}"] = {
            "label": f"{name} output complete, no duplicates, exactly the expected ids",
            "text": "every round" if pm["ok"] else "NOT in every round",
            "met": pm["ok"],
        }
    # The same ratio per round (raw and paxline run back to back, so they share the machine's
    # conditions more closely than medians taken over the whole run do).
    rates = {(r["system"], r["round"]): r["records_per_s"] for r in report["results"]}
    for key, mine, ref in (("changelog_cost", "paxline-count", "paxline-count-nochangelog"),
                           ("eos_changelog_cost", "paxline-eos-count",
                            "paxline-eos-count-nochangelog"),
                           ("ratio_vs_raw", "paxline", "raw"),
                           ("eos_ratio_vs_raw", "paxline-eos", "raw"),
                           ("eos_ratio_vs_raw_eos", "paxline-eos", "raw-eos")):  # fmt: skip
        paired = [
            rates[(mine, n)] / rates[(ref, n)]
            for n in range(1, report["rounds"] + 1)
            if (mine, n) in rates and rates.get((ref, n))
        ]
        if len(paired) > 1 and key in verdict:
            verdict[key]["text"] += (
                f"; per round {'/'.join(f'{x:.2f}' for x in paired)}, "
                f"median of per-round ratios {statistics.median(paired):.2f}x"
            )
    return {"systems": med, "verdict": verdict}


def print_report(report: dict[str, Any], summary: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\npaxline pipeline benchmark: {report['records']:,} records "
        f"(~{report['avg_value_bytes']:.0f} B JSON values, keyed) on {report['partitions']} "
        f"partitions, {report['expected_outputs']:,} pass the filter; one process per system; "
        f"batch size {report['batch_size']}; {report['rounds']} round(s), median shown"
    )
    print(
        f"machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, confluent-kafka "
        f"{m['confluent_kafka']} / librdkafka {m['librdkafka']}, Kafka {report['kafka']} "
        "(1 broker, same box)\n"
    )
    hdr = (
        f"{'system':<17} {'records/s':>10} {'vs raw':>7} {'wall s':>7} {'1st out s':>9} "
        f"{'after 1st/s':>11} {'outputs':>9} {'dups':>5} {'peak RSS':>9} {'CPU s':>6} "
        f"{'CPU us/rec':>10} {'broker':>6} {'foreign':>7} {'busy':>5}  note"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, s in summary["systems"].items():
        ratio = f"{s['ratio']:.2f}x" if s.get("ratio") is not None else "-"
        notes = []
        if s["partial"]:
            how = "timed out" if s["timed_out"] else "capped"
            notes.append(f"{how}: {s['input_records']:,} records, rate extrapolated")
        if not s["ok"]:
            notes.append("VERIFICATION FAILED")
        if len(s["all_rates"]) > 1:
            notes.append("rounds " + "/".join(f"{r:,}" for r in s["all_rates"]))
        first = s["first_output_s"]
        print(
            f"{name:<17} {s['records_per_s']:>10,.0f} {ratio:>7} {s['seconds']:>7.2f} "
            f"{(first if first is not None else float('nan')):>9.2f} "
            f"{s['after_first_per_s']:>11,.0f} {s['valid_ids']:>9,} "
            f"{s['duplicates']:>5} {s['peak_rss_mb']:>6.0f} MB {s['cpu_s']:>6.1f} "
            f"{s['cpu_us_per_record']:>10.1f} "
            f"{s['cpu_others_s'].get('broker', float('nan')):>6.1f} "
            f"{s['cpu_others_s'].get('foreign (not this benchmark)', float('nan')):>7.1f} "
            f"{s['box_busy_share']:>5.0%}  {'; '.join(notes)}"
        )
    for name, why in report["skipped"].items():
        print(f"{name:<17} skipped: {why}")
    print(
        "\nrecords/s: input records / (spawn to all outputs readable); after 1st/s: the same "
        "without start-up (spawn to first output readable); CPU s: the system's process (all "
        "threads) over the timed part, CPU us/rec per input record; broker: the Kafka "
        "broker's CPU in the same interval; foreign: CPU used on this machine by processes "
        "outside this benchmark (a shared box); busy: the machine's CPU use over the "
        "interval (2 cores)."
    )
    print(
        "\nreference (this machine class, emulated broker): "
        + ", ".join(f"{k} ~{v:,.0f}/s" for k, v in REFERENCE.items())
    )
    print("\ntargets:")
    for v in summary["verdict"].values():
        mark = "INFO" if v["met"] is None else "MET" if v["met"] else "MISSED"
        print(f"  [{mark}] {v['label']}: {v['text']}")
    b = report.get("breakdown")
    if b and "error" not in b:
        print(
            f"\nper-record main-thread CPU, best of 3 ({b['records']:,} records, "
            f"{b['outputs']:,} outputs, {b['batches']} batches; excludes librdkafka threads):"
        )
        for title, key in (("raw loop", "raw_us"), ("paxline worker", "paxline_us")):
            print(f"  {title}: {b[key.replace('_us', '_total_us')]:.2f} us/record")
            for step, v in b[key].items():
                print(f"    {v:6.2f}  {step}")
        print("  pieces:")
        for step, v in b["pieces_us"].items():
            print(f"    {v:6.2f}  {step}")
    print("\nconfigs:")
    for name, conf in report["configs"].items():
        print(f"  {name}: {json.dumps(conf, default=str)}")
    print(f"\nrun took {report['duration_s']:.0f}s; logs in {report['workdir']}/logs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="paxline worker processes per system (issue 16's scale-out: 2, with "
        "paxline-count next to paxline-count-cluster)",
    )
    ap.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, from {', '.join(SYSTEMS + OPTIONAL)}",
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat every system; median shown")
    ap.add_argument(
        "--faust-records",
        type=int,
        default=50_000,
        help="time faust on this many input records only (rate extrapolated)",
    )
    ap.add_argument("--faust-timeout", type=float, default=300.0)
    ap.add_argument("--txn-ms", type=float, default=100.0, help="raw-eos: transaction interval")
    ap.add_argument(
        "--txn-records", type=int, default=20_000, help="raw-eos: records per transaction (max)"
    )
    ap.add_argument("--timeout", type=float, default=300.0, help="per system and round")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the untimed raw-loop pass that warms the broker up",
    )
    ap.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the per-record CPU breakdown of raw loop vs worker steps",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="before each system wait up to this long for the machine to be "
        "<20%% busy (the box may be shared); 0 disables",
    )
    ap.add_argument("--workdir", default="", help="default: a fresh temporary directory")
    ap.add_argument("--json", default="", help="also write the full report here")
    ap.add_argument(
        "--pyspy-worker",
        default="",
        help="attach py-spy to the paxline workers; raw stacks written to FILE.<system>",
    )
    ap.add_argument(
        "--profile-worker",
        default="",
        help="run the paxline worker under cProfile, writing the stats here "
        "(its figures are then not comparable)",
    )
    args = ap.parse_args(argv)
    report = run(args)
    summary = summarise(report)
    print_report(report, summary)
    if args.json:
        Path(args.json).write_text(
            json.dumps({**report, "summary": summary}, indent=2, default=str)
        )
    ok = all(s["ok"] for s in summary["systems"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
