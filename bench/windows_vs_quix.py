"""A windowed count and a stream-table join: paxline vs Quix Streams (a benchmark, not a test).

Issue 18's comparison. Two jobs, each run by ONE process of each system against the same real
Kafka broker, on the same input, in the same run (helpers shared with ``bench/pipeline.py``):

* ``count``: orders keyed by user -> re-key by user (a repartition topic in both systems) ->
  tumbling event-time window (``--window-ms``, grace/allowed lateness ``--grace-ms``, event
  time = the value's ``ts``) -> count, emitted when the window closes;
* ``join``: orders -> re-key by user -> left join with a table of users kept in a topic
  (paxline ``join_table``; Quix Streams ``join_asof``, its stream-table enrichment) -> one
  output per order with the user's tier (None when the user has no row).

Same semantics, checked: the input is built so that both systems see every partition in
event-time order - only users that librdkafka's default partitioner (paxline's repartition)
and murmur2 (Quix's) put on the SAME partition are used, found by producing each candidate
key once with each partitioner, and every order is written to that partition - so nothing is
late, and both must emit exactly the windows a plain-Python computation closes (each count
equal) and exactly one joined row per order with the right tier. The join's table is loaded
first: each system is started once on the table alone (orders topic empty), left until its
process goes idle, stopped gracefully (both commit), then the orders are written and the
timed run restarts it, so every order meets a complete table in both systems (otherwise the
race between table and orders makes the two outputs legitimately differ).

records/s = input orders / (spawn to all expected outputs readable); peak RSS = VmHWM of the
process; CPU = its user+sys seconds. Ratios paxline / Quix are printed per job.

    make bench-venv
    .venv-bench/bin/python bench/windows_vs_quix.py --records 200000 --rounds 1 \\
        --json /tmp/windows-vs-quix.json

See docs/benchmarks-pipeline.md ("Windowed count and stream-table join vs Quix Streams").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_pipeline", _BENCH / "pipeline.py")
assert _spec is not None and _spec.loader is not None
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)  # sets sys.path up: the repository first, bench/ last

import orjson  # noqa: E402
from _windows_transform import (  # noqa: E402
    expected_joins,
    expected_windows,
    make_orders,
    make_table,
)
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition  # noqa: E402

from coordinator.client import CoordinatorClient  # noqa: E402
from pipeline.kafka import create_topics  # noqa: E402

SYSTEMS = ("paxline-count", "quix-count", "paxline-join", "quix-join")
PY = sys.executable
log = bp.log


# ------------------------------------------------------------------------------ the input


def partitions_by(bootstrap: str, topic: str, keys: list[str], partitioner: str) -> dict[str, int]:
    """Where `partitioner` puts each key: produce it once, read the partition from the
    delivery report (exactly what the client library does, no re-implemented hash)."""
    where: dict[str, int] = {}

    def done(err: Any, msg: Any) -> None:
        if err is None:
            where[msg.key().decode()] = msg.partition()

    p = Producer({"bootstrap.servers": bootstrap, "partitioner": partitioner, "linger.ms": 20})
    for k in keys:
        p.produce(topic, b"", k.encode(), on_delivery=done)
    p.flush(60)
    if len(where) != len(keys):
        raise SystemExit(f"partition probe: {len(keys) - len(where)} keys not delivered")
    return where


def choose_users(bootstrap: str, partitions: int, n: int) -> dict[str, int]:
    """`n` users that paxline's repartition (librdkafka default partitioner,
    consistent_random = CRC32) and Quix Streams' (murmur2) place on the same partition."""
    probe = "bench-wq-partition-probe"
    create_topics(bootstrap, {probe: partitions})
    cands = [f"u{i:05d}" for i in range(n * partitions * 3)]
    crc = partitions_by(bootstrap, probe, cands, "consistent_random")
    mm = partitions_by(bootstrap, probe, cands, "murmur2")
    same = [u for u in cands if crc[u] == mm[u]]
    if len(same) < n:
        raise SystemExit(f"only {len(same)} of {len(cands)} candidate users agree")
    return {u: crc[u] for u in same[:n]}


def produce_all(bootstrap: str, topic: str, rows: Any, partition_of: dict[str, int]) -> int:
    """Write (key, value) rows, each to its key's chosen partition, in order: idempotent, as
    a plain producer may reorder batches when it retries (it did, once per partition, right
    after the topic was created: a batch of early event times landed behind later ones and
    both systems rightly dropped it as late)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
         "enable.idempotence": True,
         "batch.num.messages": 10000, "queue.buffering.max.messages": 500000}
    )  # fmt: skip
    n = 0
    for key, value in rows:
        while True:
            try:
                producer.produce(
                    topic, orjson.dumps(value), key.encode(), partition=partition_of[key]
                )
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"preload of {topic}: records not delivered")
    return n


# --------------------------------------------------------------------------- measurement


class Outputs:
    """Reads a job's output topic from the start and keeps what it means: window counts per
    (user, window start) - paxline's ``{"key", "window_start", "value"}`` or Quix's
    ``{"start", "value"}`` keyed by the user - or the tier per order id for the join."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, kind: str) -> None:
        self.kind = kind
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-wq-verify-{topic}",
             "enable.auto.commit": False, "isolation.level": "read_committed",
             "enable.partition.eof": True}
        )  # fmt: skip
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self.pos = [0] * partitions
        self.got: dict[Any, Any] = {}
        self.read = 0
        self.duplicates = 0
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
                    v = orjson.loads(m.value())
                    if self.kind == "count":
                        if "window_start" in v:
                            k: Any = (str(v["key"]), int(v["window_start"]))
                        else:
                            k = (m.key().decode(), int(v["start"]))
                        val: Any = int(v["value"])
                    else:
                        k, val = int(v["id"]), v.get("tier")
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                    self.bad += 1
                    continue
                if k in self.got:
                    self.duplicates += 1
                self.got[k] = val

    def close(self) -> None:
        self.consumer.close()


def settle(proc: subprocess.Popen[bytes], *, min_s: float, timeout: float) -> float:
    """Wait until the process has run `min_s` and then used < 3% CPU for 3 s (it has worked
    through what it was given); returns the seconds waited."""
    t0 = time.monotonic()
    last = bp.cpu_seconds(proc.pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(3.0)
        if proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode} while loading the table")
        now = bp.cpu_seconds(proc.pid)
        if time.monotonic() - t0 >= min_s and now - last < 0.09:
            break
        last = now
    return time.monotonic() - t0


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as lf:
        return subprocess.Popen(
            cmd, cwd=bp._ROOT, env=env, stdout=lf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (both systems stop gracefully: final commit), SIGKILL after 60 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def measure(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    bootstrap: str,
    out_topic: str,
    partitions: int,
    kind: str,
    expected: dict[Any, Any],
    timeout: float,
    others: dict[str, list[int]],
) -> dict[str, Any]:
    """Spawn, time until every expected output is readable, verify, read peak RSS, stop."""
    hw = bp.Watermarks(bootstrap, out_topic, partitions)
    if sum(hw.highs()) != 0:
        raise SystemExit(f"{out_topic} is not empty before {name} starts")
    outputs = Outputs(bootstrap, out_topic, partitions, kind)
    goal = len(expected)
    target, first, timed_out = goal, None, False
    other0 = {k: sum(map(bp.cpu_seconds, v)) for k, v in others.items()}
    box0 = bp.box_cpu()
    t0 = time.monotonic()
    proc = spawn(cmd, env, log_path)
    try:
        while True:
            highs = hw.highs()
            now = time.monotonic()
            if first is None and sum(highs) > 0:
                first = now - t0
            if sum(highs) >= target:
                outputs.read_until(highs)
                present = sum(1 for k in expected if k in outputs.got)
                if present >= goal:
                    elapsed = time.monotonic() - t0
                    break
                target = outputs.read + (goal - present)
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see {log_path}")
            if now - t0 > timeout:
                timed_out, elapsed = True, now - t0
                outputs.read_until(highs)
                break
            time.sleep(0.02)
        stats = bp.proc_stats(proc.pid)
        box1 = bp.box_cpu()
        cpu_others = {k: sum(map(bp.cpu_seconds, v)) - other0[k] for k, v in others.items()}
    finally:
        stop(proc)
        final_highs: list[int] | None = None
        with contextlib.suppress(Exception):
            final_highs = hw.highs()
        hw.close()
    # Anything more that arrived right after the goal (duplicates, strays) counts too.
    if final_highs is not None:
        with contextlib.suppress(SystemExit):
            outputs.read_until(final_highs, 30)
    outputs.close()
    wrong = sum(1 for k, v in expected.items() if k in outputs.got and outputs.got[k] != v)
    missing = sum(1 for k in expected if k not in outputs.got)
    unexpected = sum(1 for k in outputs.got if k not in expected)
    busy = box1[0] - box0[0]
    samples = [
        (k, v, outputs.got.get(k, "missing"))
        for k, v in expected.items()
        if outputs.got.get(k, "missing") != v
    ][:5]
    return {
        "samples_not_equal": [repr(s) for s in samples],
        "system": name,
        "seconds": elapsed,
        "first_output_s": first,
        "expected_outputs": goal,
        "outputs_read": outputs.read,
        "wrong": wrong,
        "missing": missing,
        "unexpected": unexpected,
        "duplicates": outputs.duplicates,
        "undecodable": outputs.bad,
        "timed_out": timed_out,
        "ok": not timed_out and wrong == missing == unexpected == outputs.bad == 0,
        "box_busy_share": busy / max(box1[1] - box0[1], 1e-9),
        "cpu_others_s": cpu_others,
        **stats,
    }


# ----------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in systems:
        if s not in SYSTEMS:
            raise SystemExit(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    if any(s.startswith("quix") for s in systems) and not bp.installed("quixstreams"):
        raise SystemExit("quixstreams is not installed: make bench-venv, run with .venv-bench")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="paxline-windows-bench-"))
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    stack = bp.Stack(workdir)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    load: list[tuple[float, float, float]] = [os.getloadavg()]
    try:
        stack.start()
        assert stack.cluster is not None
        boot, parts = stack.bootstrap, args.partitions
        partition_of = choose_users(boot, parts, args.users)
        users = sorted(partition_of)
        # Event times: recent (Kafka keeps them), odd (no record ever sits exactly on a
        # window's end + grace, where "closes at" conventions could differ).
        span = args.records * args.step_ms
        base = (int(time.time() * 1000) - span) // args.window_ms * args.window_ms + 1
        if args.step_ms % 2:
            raise SystemExit("--step-ms must be even (event times stay odd)")
        orders = list(make_orders(args.records, users, base, args.step_ms, args.seed))
        table = make_table(users, args.seed)
        exp = {
            "count": expected_windows(orders, partition_of, args.window_ms, args.grace_ms),
            "join": expected_joins(orders, table),
        }
        log(
            f"{len(users)} users on {parts} partitions; {len(orders):,} orders over "
            f"{span / 1000:.0f} s of event time; {len(exp['count']):,} windows to emit; "
            f"table {len(table):,} rows; {sum(v is None for v in exp['join'].values()):,} "
            "orders without a row"
        )
        create_topics(boot, {"bench-wq-in": parts, "bench-wq-table": parts})
        produce_all(boot, "bench-wq-in", orders, partition_of)
        produce_all(boot, "bench-wq-table", table.items(), partition_of)
        env = bp.base_env()
        for rnd in range(1, args.rounds + 1):
            for name in systems:
                kind = name.split("-")[1]
                tag = f"{name}-{rnd}"
                out = f"bench-wq-out-{tag}"
                # The join reads its own orders topic, written only once the table is loaded.
                src = f"bench-wq-orders-{tag}" if kind == "join" else "bench-wq-in"
                create_topics(boot, {out: parts, src: parts})
                if name.startswith("paxline"):
                    penv = {
                        **env,
                        "PAXLINE_COORDINATORS": ",".join(stack.cluster.endpoints),
                        "PAXLINE_API_TOKEN": stack.cluster.token,
                        "PAXLINE_KAFKA": boot,
                        "PAXLINE_REDIS": stack.redis_url,
                        "BENCH_WQ_KIND": kind,
                        "BENCH_WQ_JOB": f"bench-wq-{tag}",
                        "BENCH_WQ_SOURCE": src,
                        "BENCH_WQ_SINK": out,
                        "BENCH_WQ_TABLE": "bench-wq-table",
                        "BENCH_WQ_PARTITIONS": str(parts),
                        "BENCH_WQ_WINDOW_MS": str(args.window_ms),
                        "BENCH_WQ_GRACE_MS": str(args.grace_ms),
                        "BENCH_WQ_GUARANTEE": args.guarantee,
                    }
                    sub = subprocess.run(
                        [PY, "-m", "paxline.cli", "submit", "bench/_windows_job.py:job"],
                        cwd=bp._ROOT, env={**penv, "PAXLINE_TIMEOUT": "60"},
                        capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    if sub.returncode != 0:
                        raise SystemExit(f"submit failed: {sub.stdout}{sub.stderr}")
                    cmd = [PY, "-m", "paxline.cli", "worker", "run", "--id", f"bench-{tag}",
                           "--batch-size", str(args.batch_size)]  # fmt: skip
                else:
                    a = {
                        "kind": kind, "bootstrap": boot, "source": src, "sink": out,
                        "table": "bench-wq-table", "group": f"bench-{tag}",
                        "state_dir": str(workdir / f"{tag}.state"),
                        "info": str(workdir / f"{tag}.info.json"),
                        "window_ms": args.window_ms, "grace_ms": args.grace_ms,
                        "guarantee": args.guarantee,
                    }  # fmt: skip
                    cmd, penv = [PY, "-P", str(_BENCH / "_windows_quix.py"), json.dumps(a)], env
                log_path = workdir / "logs" / f"{tag}.log"
                table_s = None
                if kind == "join":
                    proc = spawn(cmd, penv, log_path)
                    try:
                        table_s = settle(proc, min_s=8.0, timeout=300.0)
                    finally:
                        stop(proc)
                    log(f"  {name}: table loaded, idle after {table_s:.1f}s; writing the orders")
                    produce_all(boot, src, orders, partition_of)
                busy = bp.wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else float("nan")
                load.append(os.getloadavg())
                log(f"round {rnd}: {name} (machine {busy:.0%} busy, load {load[-1][0]:.2f}) ...")
                res = measure(
                    name, cmd, penv, log_path, bootstrap=boot, out_topic=out, partitions=parts,
                    kind=kind, expected=exp[kind], timeout=args.timeout, others=stack.pids(),
                )  # fmt: skip
                res.update(round=rnd, kind=kind, load_before=load[-1], table_load_s=table_s)
                res["records_per_s"] = args.records / res["seconds"]
                res["cpu_us_per_record"] = res["cpu_s"] * 1e6 / args.records
                if name.startswith("paxline"):
                    if not res["ok"]:  # where it stood: agreed offsets, ends, lag per partition
                        offs = subprocess.run(
                            [PY, "-m", "paxline.cli", "offsets", f"bench-wq-{tag}"],
                            cwd=bp._ROOT, env={**penv, "PAXLINE_TIMEOUT": "30"},
                            capture_output=True, text=True, check=False,
                        )  # fmt: skip
                        res["offsets_after"] = offs.stdout + offs.stderr
                        log(res["offsets_after"])
                    with (
                        contextlib.suppress(Exception),
                        CoordinatorClient(stack.cluster.endpoints, stack.cluster.token) as c,
                    ):
                        c.cancel_job(f"bench-wq-{tag}")
                results.append(res)
                log(
                    f"  {name}: {res['records_per_s']:,.0f} rec/s in {res['seconds']:.2f}s, "
                    f"peak RSS {res['peak_rss_mb']:.0f} MB, CPU {res['cpu_s']:.1f}s; "
                    f"{res['expected_outputs']:,} expected, wrong {res['wrong']}, missing "
                    f"{res['missing']}, unexpected {res['unexpected']}, dup "
                    f"{res['duplicates']}; {'ok' if res['ok'] else 'NOT OK'}"
                )
    finally:
        stack.stop()
    load.append(os.getloadavg())
    return {
        "records": args.records,
        "users": args.users,
        "partitions": args.partitions,
        "window_ms": args.window_ms,
        "grace_ms": args.grace_ms,
        "guarantee": args.guarantee,
        "batch_size": args.batch_size,
        "results": results,
        "load": load,
        "duration_s": time.monotonic() - started,
        "workdir": str(workdir),
        "machine": bp.machine(),
        "kafka": stack.kafka_version,
    }


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\nwindowed count + stream-table join, paxline vs Quix Streams: {report['records']:,} "
        f"orders, {report['users']} users, {report['partitions']} partitions, tumbling "
        f"{report['window_ms']} ms + grace {report['grace_ms']} ms, {report['guarantee']}, "
        f"paxline batch size {report['batch_size']}"
    )
    print(
        f"machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, Kafka "
        f"{report['kafka']}; load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.2f}' for x in report['load'][0])}, at end "
        f"{'/'.join(f'{x:.2f}' for x in report['load'][-1])}\n"
    )
    hdr = (
        f"{'system':<14} {'rnd':>3} {'records/s':>10} {'wall s':>7} {'1st out':>7} "
        f"{'peak RSS':>9} {'CPU s':>6} {'us/rec':>7} {'outputs':>8} {'wrong':>5} {'miss':>5} "
        f"{'dup':>4} {'load':>5}  ok"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in report["results"]:
        print(
            f"{r['system']:<14} {r['round']:>3} {r['records_per_s']:>10,.0f} "
            f"{r['seconds']:>7.2f} {(r['first_output_s'] or float('nan')):>7.2f} "
            f"{r['peak_rss_mb']:>6.0f} MB {r['cpu_s']:>6.1f} {r['cpu_us_per_record']:>7.1f} "
            f"{r['expected_outputs']:>8,} {r['wrong']:>5} {r['missing']:>5} "
            f"{r['duplicates']:>4} {r['load_before'][0]:>5.2f}  {'yes' if r['ok'] else 'NO'}"
        )
    print("\nratios paxline / Quix Streams (median over rounds):")
    for kind in ("count", "join"):
        pax = [r for r in report["results"] if r["system"] == f"paxline-{kind}"]
        qx = [r for r in report["results"] if r["system"] == f"quix-{kind}"]
        if not pax or not qx:
            continue

        def med(rows: list[dict[str, Any]], key: str) -> float:
            vals = sorted(r[key] for r in rows)
            return float(vals[(len(vals) - 1) // 2])

        rate = med(pax, "records_per_s") / med(qx, "records_per_s")
        rss = med(pax, "peak_rss_mb") / med(qx, "peak_rss_mb")
        cpu = med(pax, "cpu_s") / med(qx, "cpu_s")
        same = all(r["ok"] for r in pax + qx)
        print(
            f"  {kind:<5}: records/s {rate:.2f}x ({med(pax, 'records_per_s'):,.0f} vs "
            f"{med(qx, 'records_per_s'):,.0f}), peak RSS {rss:.2f}x "
            f"({med(pax, 'peak_rss_mb'):.0f} vs {med(qx, 'peak_rss_mb'):.0f} MB), CPU "
            f"{cpu:.2f}x; outputs equal to plain Python in both: {'yes' if same else 'NO'}"
        )
    print(f"\nrun took {report['duration_s']:.0f}s; logs in {report['workdir']}/logs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--window-ms", type=int, default=10_000)
    ap.add_argument("--grace-ms", type=int, default=5_000)
    ap.add_argument("--step-ms", type=int, default=2, help="event time between orders (even)")
    ap.add_argument("--batch-size", type=int, default=5000, help="paxline worker batch size")
    ap.add_argument("--guarantee", default="at-least-once",
                    choices=("at-least-once", "exactly-once"))  # fmt: skip
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0, help="per system and round")
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", default="")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r["ok"] for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
