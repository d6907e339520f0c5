"""Scale test of the paxline coordinator group (not a test): many workers, many partitions.

Starts a real 3-node cluster (`LocalCluster`, fsync on) per load, submits J jobs x P partitions,
and from one load-generator process (asyncio, raw keep-alive HTTP/1.1, see
`_coordinator_loadgen.py`) plays N workers doing what `pipeline/worker.py` does through
`coordinator/client.py`: a heartbeat every second (`POST /v1/workers/{id}/heartbeat`, with the
client's Paxline-Client-Id/Paxline-Seq session headers), then one batch of all the (job, epoch)
groups of its assigned partitions (`POST /v1/workers/{id}/checkpoints`, as
`pipeline/checkpoint.py` does since issue 17; `--commits group` sends one `CommitCheckpoint` per
group instead, as before), offsets advancing every second. Two loads side by side: small (100
workers / 1,000 partitions) and full (1,000 workers / 200 jobs x 50 partitions). Per load it
reports leader and follower CPU and RSS, heartbeat and commit p50/p99, the time for the
assignment to settle after 100 workers join / leave at once (leave = DELETE, so the session
timeout is excluded; settled = the leader's `GET /v1/workers` lists exactly the live workers and
every partition assigned), the fewest/most partitions a worker holds, snapshot size and the time
to encode/restore one, and how long a follower whose data directory was wiped takes to catch up
when restarted with `--join`.

    make bench-venv
    .venv-bench/bin/python bench/coordinator_scale.py [--quick] [--json out.json]

The machine may be shared: the load average before and after is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))
sys.path.append(str(_BENCH))

import _coordinator_loadgen as lg  # noqa: E402

from coordinator.client import CoordinatorClient  # noqa: E402
from coordinator.metadata import MetadataMachine  # noqa: E402
from coordinator.paxos.application import SessionMachine  # noqa: E402
from coordinator.server.metadata_app import MetadataApp  # noqa: E402
from coordinator.server.storage import read_snapshot  # noqa: E402
from paxline.localstack.coordinators import LocalCluster  # noqa: E402

CTX = mp.get_context("spawn")
TOKEN = "paxline-local-token"
_GET_WORKERS = (
    f"GET /v1/workers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
).encode()
TARGETS = {"leader_cores": 1.0, "commit_p99_ms": 50.0, "settle_s": 2.0, "catchup_s": 10.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ------------------------------------------------------------------ load-generator process
def _req(method: str, path: str, body: Any, client_id: str, seq: int) -> bytes:
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {TOKEN}",
        f"Paxline-Client-Id: {client_id}",
        f"Paxline-Seq: {seq}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + data


class _Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.hb: list[float] = []
        self.commit: list[float] = []  # one per request: a batch, or one group's commit
        self.groups = 0  # (job, epoch) groups those requests carried
        self.errors: dict[str, int] = {}

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


class _Endpoints:
    """The cluster's API ports, shared: whoever sees a 503 or a dead connection moves
    everyone on to the next node (as `CoordinatorClient` moves to its next endpoint)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.i = 0

    def port(self) -> int:
        return self.ports[self.i % len(self.ports)]

    def failed(self, port: int) -> None:
        if port == self.port():
            self.i += 1

    def follow(self, head: bytes) -> None:
        """A follower forwarded the request and named the leader (`Paxline-Leader`): go to
        it directly from now on, as `CoordinatorClient` does."""
        i = head.lower().find(b"\r\npaxline-leader:")
        if i >= 0:
            url = head[i + 17 : head.index(b"\r\n", i + 2)].strip().decode()
            port = int(url.rsplit(":", 1)[1].rstrip("/"))
            if port in self.ports and port != self.port():
                self.i = self.ports.index(port)


async def _worker(
    wid: str,
    eps: _Endpoints,
    stats: _Stats,
    stop: asyncio.Event,
    phase: float,
    max_beats: int,
    batch: bool,
) -> None:
    port = eps.port()
    conn = lg.Conn("127.0.0.1", port)
    seq = 0
    offset = 0
    await asyncio.sleep(phase)
    try:
        for _ in range(max_beats):  # bounded: at most one beat a second for the run
            if stop.is_set():
                break
            t_next = time.perf_counter() + 1.0
            if eps.port() != port:
                conn.close()
                port = eps.port()
                conn = lg.Conn("127.0.0.1", port)
            seq += 1
            offset += 100
            t0 = time.perf_counter()
            sent_in_window = stats.measuring  # a request counts if sent in the window
            try:
                status, body = await conn.request(
                    _req("POST", f"/v1/workers/{wid}/heartbeat", {"capacity": 1024}, wid, seq)
                )
            except (OSError, asyncio.IncompleteReadError, lg.HttpError) as exc:
                conn.close()
                eps.failed(port)
                stats.error(type(exc).__name__)
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
                continue
            if sent_in_window:
                stats.hb.append(time.perf_counter() - t0)
            eps.follow(conn.head)
            if status != 200:
                if status == 503:
                    eps.failed(port)
                stats.error(f"heartbeat HTTP {status}")
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
                continue
            groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for a in json.loads(body)["assignment"]:
                groups.setdefault((a["job"], a["epoch"]), []).append(
                    {"topic": a["topic"], "partition": a["partition"], "offset": offset}
                )
            if batch:
                # pipeline/checkpoint.py: every group in one request; a fenced group of
                # several partitions is sent again as singleton groups in one more request.
                todo: list[dict[str, Any]] = [
                    {"job": job, "epoch": epoch, "offsets": offsets}
                    for (job, epoch), offsets in sorted(groups.items())
                ]
                while todo and not stop.is_set():
                    seq += 1
                    sent, todo = todo, []
                    payload: Any = {"groups": sent}
                    t0 = time.perf_counter()
                    sent_in_window = stats.measuring  # a request counts if sent in the window
                    try:
                        status, body = await conn.request(
                            _req("POST", f"/v1/workers/{wid}/checkpoints", payload, wid, seq)
                        )
                    except (OSError, asyncio.IncompleteReadError, lg.HttpError) as exc:
                        conn.close()
                        stats.error(type(exc).__name__)
                        break
                    if sent_in_window:
                        stats.commit.append(time.perf_counter() - t0)
                        stats.groups += len(sent)
                    if status != 200:
                        if status == 503:
                            eps.failed(port)
                        stats.error(f"commit HTTP {status} {body[:40]!r}")
                        break
                    for group, res in zip(sent, json.loads(body)["results"], strict=True):
                        if res["result"] == "CheckpointCommitted":
                            continue
                        stats.error(f"commit group {res['result']}")
                        if res["result"] == "Fenced" and len(group["offsets"]) > 1:
                            todo += [{**group, "offsets": [o]} for o in group["offsets"]]
            for (job, epoch), offsets in sorted(groups.items()) if not batch else ():
                if stop.is_set():
                    break
                seq += 1
                payload = {"worker_id": wid, "epoch": epoch, "offsets": offsets}
                t0 = time.perf_counter()
                sent_in_window = stats.measuring  # a request counts if sent in the window
                try:
                    status, body = await conn.request(
                        _req("POST", f"/v1/jobs/{job}/checkpoints", payload, wid, seq)
                    )
                except (OSError, asyncio.IncompleteReadError, lg.HttpError) as exc:
                    conn.close()
                    stats.error(type(exc).__name__)
                    break
                if sent_in_window:
                    stats.commit.append(time.perf_counter() - t0)
                    stats.groups += 1
                if status == 503:
                    eps.failed(port)
                if status != 200 or b"CheckpointCommitted" not in body:
                    kind = b"fenced" if b"fenced" in body else body[:40]
                    stats.error(f"commit HTTP {status} {kind!r}")
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
        if stop.is_set() and wid.startswith("x"):
            seq += 1
            for _ in range(10):  # the goodbye, retried on the next node like the client's
                conn.close()
                port = eps.port()
                conn = lg.Conn("127.0.0.1", port)
                try:
                    status, _ = await conn.request(
                        _req("DELETE", f"/v1/workers/{wid}", None, wid, seq)
                    )
                except (OSError, asyncio.IncompleteReadError, lg.HttpError):
                    status = 0
                if status < 500 and status != 0:
                    break
                eps.failed(port)
                stats.error(f"deregister HTTP {status}")
                await asyncio.sleep(0.05)
    finally:
        conn.close()


async def _settle(
    eps: _Endpoints, live: set[str], total: int, limit: float
) -> tuple[float | None, int, int]:
    """Seconds until the leader's worker list shows all `total` partitions assigned to
    exactly the `live` workers (None if not within `limit`), and the fewest and most
    partitions a worker then holds."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        port = eps.port()
        conn = lg.Conn("127.0.0.1", port)
        try:
            status, body = await conn.request(_GET_WORKERS)
            if status == 200:
                ws = {w["worker_id"]: w["assigned"] for w in json.loads(body)["workers"]}
                if set(ws) == live and sum(ws.values()) == total:
                    return time.perf_counter() - t0, min(ws.values()), max(ws.values())
            else:
                eps.failed(port)
        except (OSError, asyncio.IncompleteReadError, lg.HttpError):
            eps.failed(port)
        finally:
            conn.close()
        await asyncio.sleep(0.02)
    return None, 0, 0


async def _load(spec: dict[str, Any], out: Any) -> dict[str, Any]:
    n, total = spec["workers"], spec["partitions"]
    eps = _Endpoints(spec["ports"])
    stats = _Stats()
    stop = asyncio.Event()
    beats = int(spec["warmup"] + spec["duration"] + 60)
    batch = spec["commits"] == "batch"
    base = [f"w{i}" for i in range(n)]
    tasks = [
        asyncio.create_task(_worker(w, eps, stats, stop, i / n, beats, batch))
        for i, w in enumerate(base)
    ]
    await asyncio.sleep(spec["warmup"])
    settled, least, most = await _settle(eps, set(base), total, 30.0)
    out.send("start")
    stats.measuring = True
    await asyncio.sleep(spec["duration"])
    stats.measuring = False
    out.send("end")
    # 100 join at once: their first heartbeats all go out together.
    extra = [f"x{i}" for i in range(spec["churn"])]
    xstop = asyncio.Event()
    xtasks = [asyncio.create_task(_worker(w, eps, stats, xstop, 0.0, beats, batch)) for w in extra]
    join, _, _ = await _settle(eps, set(base) | set(extra), total, 30.0)
    await asyncio.sleep(3.0)
    # ... and leave at once: each sends its DELETE (a worker's graceful stop).
    xstop.set()
    await asyncio.gather(*xtasks)
    leave, _, _ = await _settle(eps, set(base), total, 30.0)
    stop.set()
    await asyncio.gather(*tasks)
    hb, cm = sorted(stats.hb), sorted(stats.commit)
    d = spec["duration"]
    return {
        "initial_settled": settled is not None,
        "parts_per_worker_min": least,
        "parts_per_worker_max": most,
        "hb_per_s": len(hb) / d,
        "commit_per_s": len(cm) / d,
        "commit_groups_per_s": stats.groups / d,
        "hb_p50_ms": lg.percentile(hb, 0.5) * 1e3,
        "hb_p99_ms": lg.percentile(hb, 0.99) * 1e3,
        "commit_p50_ms": lg.percentile(cm, 0.5) * 1e3,
        "commit_p99_ms": lg.percentile(cm, 0.99) * 1e3,
        "join_settle_s": join,
        "leave_settle_s": leave,
        "errors": stats.errors,
    }


def run_load(spec: dict[str, Any], out: Any) -> None:
    try:
        out.send(asyncio.run(_load(spec, out)))
    except BaseException as exc:
        out.send({"exception": f"{type(exc).__name__}: {exc}"})
        raise


# ------------------------------------------------------------------------ one scenario
def _roles(statuses: dict[int, dict[str, Any]]) -> str:
    return ", ".join(
        f"{i}: {st.get('role', 'down')} {st.get('ballot') or ''}".rstrip()
        for i, st in sorted(statuses.items())
    )


def scenario(
    name: str, workers: int, jobs: int, parts: int, args: Any, base: Path
) -> dict[str, Any]:
    env = {"PAXLINE_WORKER_SESSION_TIMEOUT": "30"}
    cluster = LocalCluster(base / name, size=3, fsync=True, env=env)
    out: dict[str, Any] = {"workers": workers, "jobs": jobs, "partitions": jobs * parts}
    leader = cluster.start()
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token) as client:
            for j in range(jobs):
                client.submit_job(
                    {
                        "name": f"job{j}",
                        "entrypoint": "bench:job",
                        "sources": [{"topic": f"t{j}", "partitions": parts}],
                        "sink": {"kind": "kafka", "topic": "o"},
                    }
                )
        log(f"{name}: {jobs} jobs submitted, leader node {leader}")
        pids = {i: n.proc.pid for i, n in cluster.nodes.items() if n.proc is not None}
        spec = {
            "ports": [cluster.nodes[leader].api_port]
            + [n.api_port for i, n in cluster.nodes.items() if i != leader],
            "workers": workers,
            "partitions": jobs * parts,
            "warmup": args.warmup,
            "duration": args.duration,
            "churn": 100,
            "commits": args.commits,
        }
        rx, tx = CTX.Pipe(duplex=False)
        proc = CTX.Process(target=run_load, args=(spec, tx), daemon=True)
        proc.start()
        first = rx.recv()
        if first != "start":
            raise RuntimeError(f"load generator: {first}")
        c0 = {i: lg.cpu_seconds(p) for i, p in pids.items()}
        g0, m0 = lg.cpu_seconds(proc.pid or 0), lg.machine_busy_seconds()
        st0 = {i: cluster.status(i) or {} for i in pids}
        t0 = time.monotonic()
        log(f"{name}: window opens, statuses {_roles(st0)}")
        rx.recv()
        dt = time.monotonic() - t0
        c1 = {i: lg.cpu_seconds(p) for i, p in pids.items()}
        g1, m1 = lg.cpu_seconds(proc.pid or 0), lg.machine_busy_seconds()
        # The load generator is one Python process playing every worker: when it nears a
        # core, its own scheduling delay is part of every latency it measures.
        out["loadgen_cores"] = None if g0 is None or g1 is None else (g1 - g0) / dt
        out["machine_busy_cores"] = (m1 - m0) / dt
        st1 = {i: cluster.status(i) or {} for i in pids}
        log(f"{name}: window closes, statuses {_roles(st1)}")
        # The node that led when the window opened (the warm-up's registrations may have
        # moved the lead from the node that took the jobs): its figures are the leader's,
        # and they count only if it still led at the same ballot when the window closed.
        leading = [i for i, st in st0.items() if st.get("role") == "leader"]
        window_leader = leading[0] if leading else leader
        s0, s1 = st0[window_leader], st1[window_leader]
        out["leader_node"] = window_leader
        out["leader_changed_before_window"] = window_leader != leader
        for i, p in pids.items():
            role = "leader" if i == window_leader else f"follower{i}"
            a, b = c0[i], c1[i]
            out[f"{role}_cores"] = None if a is None or b is None else (b - a) / dt
            out[f"{role}_rss_mb"] = rss_mb(p)
            late0, late1 = st0[i].get("loop_late"), st1[i].get("loop_late")
            if isinstance(late0, dict) and isinstance(late1, dict):
                # How late each node's loop woke (server/ticks.py): ticks dropped in the
                # window, and the longest lateness since the node started (warm-up included).
                out[f"{role}_ticks_dropped"] = late1["ticks_dropped"] - late0["ticks_dropped"]
                out[f"{role}_loop_late_max_s"] = late1.get("max_seconds")
        out["leader_kept"] = (
            s0.get("role") == "leader"
            and s1.get("role") == "leader"
            and s0.get("ballot") == s1.get("ballot")
        )
        slots = int(str(s1.get("commit_index", 0))) - int(str(s0.get("commit_index", 0)))
        out["slots_per_s"] = slots / dt
        res = rx.recv()
        proc.join(30)
        if "exception" in res:
            raise RuntimeError(res["exception"])
        out.update(res)
        # Snapshot: the leader's latest, its size and the time to encode / restore it.
        # The node keeps its Paxos state in <data dir>/paxos (runtime.py). The first version
        # of this script opened DiskStorage on <data dir> itself, found no snapshot there
        # (and created an empty log beside the node's): read the file, never open the log.
        snap = read_snapshot(cluster.nodes[window_leader].data_dir / "paxos")
        if snap is not None:
            # What the node writes: the session table and membership (JSON) around the
            # metadata machine's own msgpack snapshot (coordinator/paxos/application.py).
            out["snapshot_index"] = snap.index
            out["snapshot_bytes"] = len(snap.data)
            whole = SessionMachine(MetadataApp())
            t = time.perf_counter()
            whole.restore(snap.data)
            out["snapshot_restore_ms"] = (time.perf_counter() - t) * 1e3
            out["snapshot_metadata_bytes"] = len(whole.app.snapshot())
            times = []
            for _ in range(5):
                t = time.perf_counter()
                whole.snapshot()
                times.append(time.perf_counter() - t)
            out["snapshot_encode_ms"] = statistics.median(times) * 1e3
        # Catch-up from empty: a follower's data directory wiped, restarted with --join.
        # Whoever leads now stays (wiping the leader would time a fail-over as well).
        leader = cluster.wait_for_leader(30)
        follower = next(i for i in cluster.nodes if i != leader)
        cluster.kill(follower)
        shutil.rmtree(cluster.nodes[follower].data_dir)
        target = int(str((cluster.status(leader) or {}).get("commit_index", 0)))
        t = time.monotonic()
        cluster.start_node(follower, join=True)
        took = None
        while time.monotonic() - t < 60:
            v = cluster.status(follower, timeout=0.5)
            if v and int(str(v.get("applied_index", 0))) >= target:
                took = time.monotonic() - t
                break
            time.sleep(0.05)
        out["catchup_s"] = took
        out["catchup_slots"] = target
    finally:
        cluster.stop()
    return out


def machine_costs(workers: int, jobs: int, parts: int) -> dict[str, Any]:
    """The metadata machine's own cost at a load, in one process, best of several runs: what
    every node pays on its event loop per membership change, per heartbeat read and per
    snapshot, whatever else the machine is doing (CPU time, so robust to a shared machine)."""
    from coordinator.commands import DeregisterWorker, RegisterWorker, SubmitJob
    from coordinator.protocol import JobSpec, SourceSpec

    m = MetadataMachine()
    slot = 0

    def apply(cmd: Any) -> float:
        nonlocal slot
        slot += 1
        t = time.process_time()
        m.apply_command(cmd, slot)
        return time.process_time() - t

    for j in range(jobs):
        spec = JobSpec(f"job{j}", "bench:job", (SourceSpec(f"t{j}", parts),), {"kind": "kafka"})
        apply(SubmitJob(spec))
    t = time.process_time()
    for i in range(workers):
        apply(RegisterWorker(f"w{i}", 1024))
    out: dict[str, Any] = {"m_build_s": time.process_time() - t}
    counts = [w.assigned for w in m.workers()]
    out["m_parts_per_worker_min"], out["m_parts_per_worker_max"] = min(counts), max(counts)
    leaves = [apply(DeregisterWorker(f"w{i}")) for i in range(100)]
    joins = [apply(RegisterWorker(f"x{i}", 1024)) for i in range(100)]
    out["m_leave_ms_p50"] = statistics.median(leaves) * 1e3
    out["m_leave_ms_max"] = max(leaves) * 1e3
    out["m_join_ms_p50"] = statistics.median(joins) * 1e3
    out["m_join_ms_max"] = max(joins) * 1e3
    counts = [w.assigned for w in m.workers()]
    out["m_after_churn_min"], out["m_after_churn_max"] = min(counts), max(counts)
    reads = []
    live = [w.worker_id for w in m.workers()]
    for i in range(1000):
        wid = live[i % len(live)]
        t = time.perf_counter()
        m.worker(wid)
        m.assignment(wid)
        reads.append(time.perf_counter() - t)
    out["m_heartbeat_read_us_p50"] = statistics.median(reads) * 1e6
    t = time.perf_counter()
    snap = m.snapshot()
    out["m_snapshot_encode_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    MetadataMachine().restore(snap)
    out["m_snapshot_restore_ms"] = (time.perf_counter() - t) * 1e3
    out["m_snapshot_bytes"] = len(snap)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short windows (smoke run)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=["small", "full"])
    ap.add_argument(
        "--commits",
        choices=["batch", "group"],
        default="batch",
        help="batch: one POST /v1/workers/{id}/checkpoints per worker per second, as "
        "pipeline/checkpoint.py does (default); group: one CommitCheckpoint per (job, epoch) "
        "group, as before issue 17's batching",
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the clusters' data directories and coordinator.log files (path printed)",
    )
    ap.add_argument(
        "--machine-only",
        action="store_true",
        help="only the metadata machine's costs in this process (no cluster; seconds)",
    )
    args = ap.parse_args()
    args.warmup, args.duration = (5.0, 5.0) if args.quick else (10.0, 20.0)
    load0 = os.getloadavg()
    log(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, {os.cpu_count()} cpus")
    log(f"checkpoint commits: {args.commits}")
    loads = {"small": (100, 20, 50), "full": (1000, 200, 50)}
    results: dict[str, dict[str, Any]] = {}
    base = Path(tempfile.mkdtemp(prefix="paxline-scale-"))
    try:
        for name, (w, j, p) in loads.items():
            if args.only and name != args.only:
                continue
            if args.machine_only:
                results[name] = {**machine_costs(w, j, p), "errors": {}}
                continue
            results[name] = scenario(name, w, j, p, args, base)
            results[name].update(machine_costs(w, j, p))
            log(f"{name}: {results[name]}")
    finally:
        if args.keep:
            log(f"data directories and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    load1 = os.getloadavg()
    keys = sorted({k for r in results.values() for k in r if k != "errors"})
    print(f"{'':24}" + "".join(f"{n:>14}" for n in results))
    for k in keys:
        print(f"{k:24}" + "".join(f"{_fmt(r.get(k)):>14}" for r in results.values()))
    print(f"errors: { {n: r['errors'] for n, r in results.items()} }")
    print(
        f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1-min), {os.cpu_count()} cpus"
    )
    if args.machine_only:
        if args.json:
            args.json.write_text(json.dumps({"results": results, "load": [load0, load1]}))
        return 0
    full = results.get("full") or next(iter(results.values()))
    checks = [
        (
            "leader < 1 core",
            full.get("leader_cores") if full.get("leader_kept") else None,
            TARGETS["leader_cores"],
        ),
        ("commit p99 < 50 ms", full.get("commit_p99_ms"), TARGETS["commit_p99_ms"]),
        ("join settles < 2 s", full.get("join_settle_s"), TARGETS["settle_s"]),
        ("leave settles < 2 s", full.get("leave_settle_s"), TARGETS["settle_s"]),
        ("catch-up from empty < 10 s", full.get("catchup_s"), TARGETS["catchup_s"]),
    ]
    for label, value, limit in checks:
        met = value is not None and value < limit
        print(f"target {label:30} {_fmt(value):>10}  {'met' if met else 'MISSED'}")
    if args.json:
        doc = {"results": results, "load": [load0, load1], "commits": args.commits}
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
