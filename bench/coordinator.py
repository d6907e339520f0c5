"""Benchmark of the paxline coordinator against PySyncObj and etcd (not a test).

Starts a real 3-node paxline coordinator cluster (fsync on), then from a separate load-
generator process measures checkpoint commits per second and p50/p99 latency with 1 and with
64 concurrent clients, and the median fail-over time over N kills (kill -9 the leader, time
until the next commit succeeds). It measures the same on PySyncObj (Raft, 3 processes, its
defaults: a `ReplDict.set` with a callback) and on etcd 3.4 (3 members on 127.0.0.1, `POST
/v3/kv/put` through its HTTP/JSON gateway), and prints our/their ratios and the targets.

    make bench-venv
    .venv-bench/bin/python bench/coordinator.py --json /tmp/coordinator-bench.json

Order per system: N leader kills on the freshly started cluster, then the load phases, then
one more leader kill after the load, timing how long the restarted node takes to rejoin. The
machine is shared, so before each measurement the script waits (up to --quiet-wait s) until
other processes use at most --quiet-threshold of a core, and reports what they used. About
6 minutes on a quiet 2-core machine, up to ~16 when it has to wait.

Needs `pysyncobj` (the `bench` extra) and Debian's `etcd-server`; a peer that is missing is
skipped with a note. See docs/benchmarks-coordinator.md for figures and method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the `coordinator` package: keep its folder off the front of
# sys.path (where running it as a script puts it), so `import coordinator` finds the package,
# and append it at the end for the `_coordinator_*` helpers.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))
sys.path.append(str(_BENCH))

import _coordinator_loadgen as lg  # noqa: E402
import _coordinator_zookeeper as zkb  # noqa: E402  (the ZooKeeper peer: issue 19)
from _coordinator_etcd import EtcdCluster, etcd_binary  # noqa: E402

from coordinator.client import CoordinatorClient  # noqa: E402
from paxline.localstack.common import free_port  # noqa: E402
from paxline.localstack.coordinators import LocalCluster  # noqa: E402

CTX = mp.get_context("spawn")
JOB = "bench"
TOPIC = "t"
PARTITIONS = 64
WORKER = "w1"
FAILOVER_PARTITION = PARTITIONS - 1

# Reference figures for the peers measured on this machine class (from the brief), and the
# targets for paxline.
REFERENCE = {
    "pysyncobj_ops_64": 600.0,
    "etcd_ops_64": 1900.0,
    "etcd_p99_1_ms": 11.0,
    "etcd_failover_s": 1.2,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load phase in a fresh load-generator process."""
    recv, send = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=lg.run_load, args=(spec, send), name="loadgen")
    proc.start()
    send.close()
    timeout = spec["warmup"] + spec["duration"] + 60
    if not recv.poll(timeout):
        proc.kill()
        raise RuntimeError(f"load generator gave no answer within {timeout:.0f}s")
    result: dict[str, Any] = recv.recv()
    proc.join(10)
    if "exception" in result:
        raise RuntimeError(f"load generator failed: {result['exception']}")
    return result


def add_derived(r: dict[str, Any]) -> dict[str, Any]:
    """Leader CPU per commit: robust to other load on this shared machine, unlike ops/s."""
    leader_cpu = (r.get("watched_cpu") or {}).get("leader")
    if leader_cpu and r.get("ops_per_s"):
        r["leader_us_per_op"] = leader_cpu / r["ops_per_s"] * 1e6
    return r


def describe(r: dict[str, Any]) -> str:
    cpu = r.get("watched_cpu") or {}
    cpu_s = " ".join(f"{k}={v * 100:.0f}%" for k, v in cpu.items() if v is not None)
    lg_cpu = r.get("loadgen_cpu")
    lg_s = "in-process" if lg_cpu is None else f"{lg_cpu * 100:.0f}%"
    err = sum(r["errors"].values())
    other = r.get("other_cpu")
    other_s = "-" if other is None else f"{other * 100:.0f}%"
    return (
        f"{r['clients']:>2} clients: {r['ops_per_s']:8.0f} ops/s  p50 {r['p50_ms']:6.2f} ms  "
        f"p99 {r['p99_ms']:6.2f} ms  errors {err}  CPU (100% = 1 core): loadgen {lg_s}, "
        f"{cpu_s}, other processes {other_s}"
        + (f"; leader {r['leader_us_per_op']:.0f} us CPU/commit" if "leader_us_per_op" in r else "")
        + (f"; {r['ballot_rounds']} ballot rounds opened" if "ballot_rounds" in r else "")
    )


def background_cpu(pids: list[int], interval: float = 1.0) -> float:
    """CPU (in cores) used over `interval` by processes other than ours (`pids` and this one)."""
    m0, s0 = lg.machine_busy_seconds(), time.process_time()
    p0 = {p: lg.cpu_seconds(p) for p in pids}
    time.sleep(interval)
    m1, s1 = lg.machine_busy_seconds(), time.process_time()
    ours = s1 - s0
    for p, a in p0.items():
        b = lg.cpu_seconds(p)
        if a is not None and b is not None:
            ours += b - a
    return max(0.0, (m1 - m0 - ours) / interval)


def wait_for_quiet(name: str, pids: list[int], args: argparse.Namespace) -> float:
    """This machine is shared: before a measurement, wait (up to --quiet-wait seconds) until
    other processes use at most --quiet-threshold of a core. Returns what they used."""
    deadline = time.monotonic() + args.quiet_wait
    said = False
    while True:
        bg = background_cpu(pids)
        if bg <= args.quiet_threshold:
            return bg
        if time.monotonic() >= deadline:
            log(f"{name}: other processes still use {bg * 100:.0f}% of a core; measuring anyway")
            return bg
        if not said:
            log(
                f"{name}: other processes use {bg * 100:.0f}% of a core; waiting up to "
                f"{args.quiet_wait:.0f}s for a quieter machine"
            )
            said = True
        time.sleep(1.0)


def failover_summary(times: list[float], attempts: list[int]) -> dict[str, Any]:
    if not times:
        return {"kills": 0}
    s = sorted(times)
    return {
        "kills": len(s),
        "median_s": statistics.median(s),
        "min_s": s[0],
        "max_s": s[-1],
        "mean_s": statistics.fmean(s),
        "all_s": [round(t, 4) for t in times],
        "probe_attempts": attempts,
    }


# ------------------------------------------------------------------------------ paxline
def _stop_paxline(cluster: LocalCluster, grace: float = 10.0) -> list[int]:
    """SIGTERM every node, SIGKILL those still running after `grace` seconds; returns the
    nodes that needed the SIGKILL (LocalCluster.stop would wait 30 s per node, then raise)."""
    for node in cluster.nodes.values():
        if node.alive() and node.proc is not None:
            node.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    stuck = []
    for i, node in cluster.nodes.items():
        if node.proc is None:
            continue
        try:
            node.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stuck.append(i)
            node.proc.kill()
            node.proc.wait(10)
    return stuck


def _paxline_converged(cluster: LocalCluster) -> bool:
    views = [cluster.status(i, timeout=0.5) for i, n in cluster.nodes.items() if n.alive()]
    if any(v is None for v in views):
        return False
    leaders = [v for v in views if v and v.get("role") == "leader"]
    marks = {(v["commit_index"], v["applied_index"]) for v in views if v}
    return len(leaders) == 1 and len(marks) == 1


def _ballot_round(cluster: LocalCluster) -> int:
    """Highest ballot round any live node has promised."""
    best = 0
    for i, node in cluster.nodes.items():
        view = cluster.status(i, timeout=1.0) if node.alive() else None
        if view and view.get("promised"):
            best = max(best, int(str(view["promised"]).split(".")[0]))
    return best


def _wait(condition: Any, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `condition()` held, or None if it did not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def bench_paxline(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    env = {"PAXLINE_WORKER_SESSION_TIMEOUT": "600", **dict(args.paxline_env)}
    cluster = LocalCluster(base / "paxline", size=3, fsync=True, env=env)
    out: dict[str, Any] = {"load": {}, "failover": {}}
    t = time.monotonic()
    leader = cluster.start()
    log(f"paxline: 3 nodes up, leader node {leader} after {time.monotonic() - t:.1f}s")
    targets = [("127.0.0.1", int(u.rsplit(":", 1)[1])) for u in cluster.endpoints]
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token) as client:
            client.submit_job(
                {
                    "name": JOB,
                    "entrypoint": "bench:job",
                    "sources": [{"topic": TOPIC, "partitions": PARTITIONS}],
                    "sink": {"kind": "kafka", "topic": "o"},
                }
            )
            hb = client.heartbeat(WORKER, capacity=100_000)
        epochs = {str(a.partition): int(a.epoch) for a in hb.assignment}
        if len(epochs) != PARTITIONS:
            raise RuntimeError(f"worker got {len(epochs)} of {PARTITIONS} partitions: {hb}")
        params = {
            "job": JOB,
            "worker_id": WORKER,
            "topic": TOPIC,
            "epochs": epochs,
            "token": cluster.token,
        }
        offset_base = 0

        def kill_leader_and_probe(tag: str) -> tuple[int, float, int]:
            nonlocal offset_base
            leader = cluster.wait_for_leader(30)
            offset_base += 10**9
            probe = {
                **params,
                "partitions": [FAILOVER_PARTITION],
                "client_prefix": f"{tag}-",
                "offset_base": offset_base,
            }
            # One commit before the kill, so the cluster is known to be serving.
            lg.probe_until_success("paxline", targets, probe, time.monotonic())
            probe["client_prefix"] = f"{tag}-after-"
            t0 = time.monotonic()
            cluster.kill(leader)
            took, n_attempts = lg.probe_until_success("paxline", targets, probe, t0)
            return leader, took, n_attempts

        # Fail-over first, on the fresh cluster (see the docs for why: a node restarted
        # after the load phases may not rejoin; that is measured separately below).
        times: list[float] = []
        attempts: list[int] = []
        if args.kills:
            pids = [node.proc.pid for node in cluster.nodes.values() if node.proc is not None]
            out["failover_background_cpu"] = wait_for_quiet("paxline", pids, args)
        for k in range(args.kills):
            if _wait(lambda: _paxline_converged(cluster), 30) is None:
                raise RuntimeError("paxline cluster did not converge before a kill")
            leader, took, n_attempts = kill_leader_and_probe(f"failover{k}")
            times.append(took)
            attempts.append(n_attempts)
            new_leader = cluster.wait_for_leader(30, exclude=leader)
            log(f"paxline:   kill {k + 1}: node {leader} -> node {new_leader}: {took:.3f}s")
            cluster.start_node(leader)
        out["failover"] = failover_summary(times, attempts)
        if _wait(lambda: _paxline_converged(cluster), 30) is None:
            raise RuntimeError("paxline cluster did not converge after the kills")

        for n in args.clients:
            leader = cluster.wait_for_leader(30)
            leader_url = cluster.nodes[leader].url
            offset_base += 10**9
            spec = {
                "kind": "paxline",
                "host": "127.0.0.1",
                "port": int(leader_url.rsplit(":", 1)[1]),
                "clients": n,
                "warmup": args.warmup,
                "duration": args.duration,
                "params": {
                    **params,
                    "partitions": list(range(PARTITIONS)),
                    "client_prefix": f"load{n}-",
                    "offset_base": offset_base,
                },
                "watch_pids": {
                    ("leader" if i == leader else f"node{i}"): node.proc.pid
                    for i, node in cluster.nodes.items()
                    if node.proc is not None
                },
            }
            pids = [node.proc.pid for node in cluster.nodes.values() if node.proc is not None]
            bg = wait_for_quiet("paxline", pids, args)
            profiler = None
            if args.py_spy and n == max(args.clients):
                proc = cluster.nodes[leader].proc
                assert proc is not None
                profiler = start_py_spy(proc.pid, args.warmup, args.duration, args.py_spy)
            rounds0, t_rounds = _ballot_round(cluster), time.monotonic()
            r = run_loadgen(spec)
            r["background_cpu_before"] = bg
            # Elections with no fault injected: ballot rounds opened during the phase
            # (every campaign opens one, won or not), per minute (issue 17).
            rounds = _ballot_round(cluster) - rounds0
            r["ballot_rounds"] = rounds
            r["elections_per_min"] = rounds * 60 / (time.monotonic() - t_rounds)
            if profiler is not None:
                profiler.wait(args.duration + 30)
                log(f"paxline: py-spy profile of the leader written to {args.py_spy}")
            out["load"][str(n)] = add_derived(r)
            log("paxline:   " + describe(r))

        if args.rejoin_check:
            out["rejoin_after_load"] = rejoin_check(
                "paxline",
                lambda: kill_leader_and_probe("rejoin"),
                cluster.start_node,
                lambda: _paxline_converged(cluster),
                args.rejoin_timeout,
            )
    finally:
        stuck = _stop_paxline(cluster)
        if stuck:
            out["sigterm_ignored_by"] = stuck
            log(f"paxline: nodes {stuck} did not exit within 10 s of SIGTERM (SIGKILLed)")
    return out


def rejoin_check(
    name: str,
    kill_and_probe: Any,
    restart: Any,
    converged: Any,
    timeout: float,
) -> dict[str, Any]:
    """After the load phases: kill the leader once more, time the fail-over, restart the
    killed node and time until every node agrees on one leader and one commit index."""
    leader, took, _ = kill_and_probe()
    restart(leader)
    settle = _wait(converged, timeout, interval=0.1)
    shown = f"{settle:.2f}s" if settle is not None else f"NOT within {timeout:.0f}s"
    log(f"{name}: after load: fail-over {took:.3f}s; restarted node rejoined: {shown}")
    return {"failover_s": took, "rejoin_s": settle, "rejoin_timeout_s": timeout}


def start_py_spy(pid: int, warmup: float, duration: float, path: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    fmt = {".json": "speedscope", ".txt": "raw"}.get(Path(path).suffix, "flamegraph")
    # Sample the measurement window only (the load generator's warm-up is skipped).
    cmd = [
        exe,
        "record",
        "-p",
        str(pid),
        "-d",
        str(int(duration)),
        "-r",
        "200",
        "-f",
        fmt,
        "-o",
        path,
        "--nonblocking",
    ]
    return subprocess.Popen(
        ["sh", "-c", f"sleep {warmup}; exec " + shlex.join(cmd)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------------------- PySyncObj
class PySyncObjCluster:
    def __init__(self) -> None:
        import _coordinator_pysyncobj as ps

        self.target = ps.node_main
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.procs: dict[int, Any] = {}
        self.conns: dict[int, Any] = {}

    def start_node(self, i: int) -> None:
        parent, child = CTX.Pipe()
        a = self.addrs[i]
        p = CTX.Process(
            target=self.target, args=(a, [x for x in self.addrs if x != a], child), daemon=True
        )
        p.start()
        child.close()
        self.procs[i], self.conns[i] = p, parent

    def call(self, i: int, *msg: Any, timeout: float = 60.0) -> dict[str, Any]:
        self.conns[i].send(msg)
        if not self.conns[i].poll(timeout):
            raise RuntimeError(f"PySyncObj node {i} did not answer {msg[0]!r}")
        result: dict[str, Any] = self.conns[i].recv()
        return result

    def alive(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.is_alive()]

    def wait_for_leader(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = {i: self.call(i, "status") for i in self.alive()}
            leaders = [i for i, s in st.items() if s["leader"]]
            if (
                len(leaders) == 1
                and leaders[0] != exclude
                and all(s["ready"] for s in st.values())
                and {s["leader_addr"] for s in st.values()} == {self.addrs[leaders[0]]}
            ):
                return leaders[0]
            time.sleep(0.05)
        raise TimeoutError("PySyncObj elected no leader")

    def wait_all_applied(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = [self.call(i, "status") for i in self.alive()]
            if len({(s["commit_index"], s["applied_index"]) for s in st}) == 1:
                return
            time.sleep(0.05)
        raise TimeoutError("PySyncObj nodes did not converge")

    def kill(self, i: int) -> None:
        self.procs[i].kill()
        self.procs[i].join(10)
        self.conns[i].close()

    def stop(self) -> None:
        for i in self.alive():
            with contextlib.suppress(RuntimeError, OSError, EOFError):
                self.call(i, "stop", timeout=5)
        for p in self.procs.values():
            p.join(5)
            if p.is_alive():
                p.kill()


def bench_pysyncobj(args: argparse.Namespace) -> dict[str, Any]:
    cluster = PySyncObjCluster()
    out: dict[str, Any] = {"load": {}, "failover": {}}
    t = time.monotonic()
    for i in range(3):
        cluster.start_node(i)

    def converged() -> bool:
        try:
            cluster.wait_for_leader(0.5)
            cluster.wait_all_applied(0.5)
            return True
        except TimeoutError:
            return False

    def kill_leader_and_probe() -> tuple[int, float, int]:
        leader = cluster.wait_for_leader(30)
        survivor = next(i for i in cluster.alive() if i != leader)
        t0 = time.monotonic()
        cluster.kill(leader)
        r = cluster.call(survivor, "probe", t0, 0.02, 30.0, timeout=40)
        if "seconds" not in r:
            raise RuntimeError(f"PySyncObj fail-over probe: {r}")
        return leader, float(r["seconds"]), int(r["attempts"])

    try:
        leader = cluster.wait_for_leader(60)
        log(f"PySyncObj: 3 nodes up, leader {leader} after {time.monotonic() - t:.1f}s")
        times: list[float] = []
        attempts: list[int] = []
        if args.pysyncobj_kills:
            pids = [p.pid for p in cluster.procs.values()]
            out["failover_background_cpu"] = wait_for_quiet("PySyncObj", pids, args)
        for k in range(args.pysyncobj_kills):
            if _wait(converged, 30) is None:
                raise RuntimeError("PySyncObj did not converge before a kill")
            leader, took, n_attempts = kill_leader_and_probe()
            times.append(took)
            attempts.append(n_attempts)
            log(f"PySyncObj: kill {k + 1}: node {leader}: {took:.3f}s")
            cluster.start_node(leader)
        out["failover"] = failover_summary(times, attempts)
        if _wait(converged, 30) is None:
            raise RuntimeError("PySyncObj did not converge after the kills")

        offset_base = 0
        for n in args.clients:
            leader = cluster.wait_for_leader(30)
            offset_base += 10**9
            watch = {
                ("leader" if i == leader else f"node{i}"): p.pid for i, p in cluster.procs.items()
            }
            bg = wait_for_quiet("PySyncObj", [p.pid for p in cluster.procs.values()], args)
            r = cluster.call(
                leader,
                "load",
                n,
                args.warmup,
                args.duration,
                offset_base,
                watch,
                timeout=args.warmup + args.duration + 60,
            )
            r["background_cpu_before"] = bg
            out["load"][str(n)] = add_derived(r)
            log("PySyncObj: " + describe(r))
        if args.rejoin_check and args.pysyncobj_kills:
            out["rejoin_after_load"] = rejoin_check(
                "PySyncObj",
                kill_leader_and_probe,
                cluster.start_node,
                converged,
                args.rejoin_timeout,
            )
    finally:
        cluster.stop()
    return out


# --------------------------------------------------------------------------------- etcd
def bench_etcd(args: argparse.Namespace, base: Path, binary: str) -> dict[str, Any]:
    cluster = EtcdCluster(base / "etcd", binary=binary)
    out: dict[str, Any] = {"load": {}, "failover": {}}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    out["version"] = version.splitlines()[0] if version else "unknown"
    targets = [("127.0.0.1", m.client_port) for m in cluster.members.values()]
    offset_base = 0

    def converged() -> bool:
        try:
            cluster.wait_for_leader(0.5)
            cluster.wait_all_caught_up(0.5)
            return True
        except TimeoutError:
            return False

    def kill_leader_and_probe(tag: str) -> tuple[int, float, int]:
        nonlocal offset_base
        leader = cluster.wait_for_leader(30)
        offset_base += 10**9
        params = {"key_prefix": f"{tag}/", "offset_base": offset_base}
        lg.probe_until_success("etcd", targets, params, time.monotonic())
        t0 = time.monotonic()
        cluster.kill(leader)
        took, n_attempts = lg.probe_until_success("etcd", targets, params, t0)
        return leader, took, n_attempts

    t = time.monotonic()
    leader = cluster.start()
    log(f"etcd: 3 members up, leader e{leader} after {time.monotonic() - t:.1f}s")
    try:
        times: list[float] = []
        attempts: list[int] = []
        if args.etcd_kills:
            pids = [m.proc.pid for m in cluster.members.values() if m.proc is not None]
            out["failover_background_cpu"] = wait_for_quiet("etcd", pids, args)
        for k in range(args.etcd_kills):
            if _wait(converged, 30) is None:
                raise RuntimeError("etcd did not converge before a kill")
            leader, took, n_attempts = kill_leader_and_probe(f"failover/{k}")
            times.append(took)
            attempts.append(n_attempts)
            new_leader = cluster.wait_for_leader(30, exclude=leader)
            log(f"etcd:      kill {k + 1}: e{leader} -> e{new_leader}: {took:.3f}s")
            cluster.start_member(leader)
        out["failover"] = failover_summary(times, attempts)
        if _wait(converged, 30) is None:
            raise RuntimeError("etcd did not converge after the kills")

        for n in args.clients:
            leader = cluster.wait_for_leader(30)
            offset_base += 10**9
            spec = {
                "kind": "etcd",
                "host": "127.0.0.1",
                "port": cluster.members[leader].client_port,
                "clients": n,
                "warmup": args.warmup,
                "duration": args.duration,
                "params": {"key_prefix": f"bench/{n}/", "offset_base": offset_base},
                "watch_pids": {
                    ("leader" if i == leader else m.name): m.proc.pid
                    for i, m in cluster.members.items()
                    if m.proc is not None
                },
            }
            pids = [m.proc.pid for m in cluster.members.values() if m.proc is not None]
            bg = wait_for_quiet("etcd", pids, args)
            r = run_loadgen(spec)
            r["background_cpu_before"] = bg
            out["load"][str(n)] = add_derived(r)
            log("etcd:      " + describe(r))
        if args.rejoin_check and args.etcd_kills:
            out["rejoin_after_load"] = rejoin_check(
                "etcd",
                lambda: kill_leader_and_probe("rejoin"),
                cluster.start_member,
                converged,
                args.rejoin_timeout,
            )
    finally:
        cluster.stop()
    return out


# ------------------------------------------------------------------------------ report
def _fmt(v: float | None, unit: str) -> str:
    if v is None or v != v:  # None or NaN
        return "-"
    if unit == "ops":
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "s":
        return f"{v:.3f}"
    if unit == "us":
        return f"{v:.0f}"
    if unit == "%":
        return f"{v * 100:.0f}%"
    return str(v)


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs or ours != ours or theirs != theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def _get(res: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = res
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def report(results: dict[str, Any], clients: list[int]) -> tuple[str, list[dict[str, Any]]]:
    px, pso, etcd = results.get("paxline"), results.get("pysyncobj"), results.get("etcd")
    lo, hi = min(clients), max(clients)
    rows: list[tuple[str, tuple[str, ...], str, str]] = []
    for n in sorted(set(clients)):
        rows.append(
            (
                f"commits/s, {n} client{'s' if n > 1 else ''}",
                ("load", str(n), "ops_per_s"),
                "ops",
                "higher",
            )
        )
        rows.append(
            (
                f"p50 latency ms, {n} client{'s' if n > 1 else ''}",
                ("load", str(n), "p50_ms"),
                "ms",
                "lower",
            )
        )
        rows.append(
            (
                f"p99 latency ms, {n} client{'s' if n > 1 else ''}",
                ("load", str(n), "p99_ms"),
                "ms",
                "lower",
            )
        )
    rows.append(("fail-over median s", ("failover", "median_s"), "s", "lower"))
    rows.append(("fail-over max s", ("failover", "max_s"), "s", "lower"))
    rows.append(("fail-over after load s", ("rejoin_after_load", "failover_s"), "s", "lower"))
    rows.append(("restarted node rejoins s", ("rejoin_after_load", "rejoin_s"), "s", "lower"))
    rows.append((f"load-gen CPU, {hi} clients", ("load", str(hi), "loadgen_cpu"), "%", ""))
    rows.append((f"other processes' CPU, {hi} cl.", ("load", str(hi), "other_cpu"), "%", ""))
    rows.append(
        (f"leader CPU us/commit, {hi} cl.", ("load", str(hi), "leader_us_per_op"), "us", "lower")
    )
    rows.append((f"leader CPU, {hi} clients", ("load", str(hi), "watched_cpu", "leader"), "%", ""))

    header = (
        f"{'':30} {'paxline':>10} {'PySyncObj':>10} {'etcd':>10}"
        f" {'px/PySyncObj':>13} {'px/etcd':>9}  better"
    )
    lines = [header, "-" * len(header)]
    for label, path, unit, better in rows:
        a, b, c = _get(px, *path), _get(pso, *path), _get(etcd, *path)
        ratios = ("", "") if not better else (_ratio(a, b), _ratio(a, c))
        shown = [_fmt(v, unit) for v in (a, b, c)]
        if path[-1] == "rejoin_s":  # None there means "did not rejoin within the timeout"
            for j, res in enumerate((px, pso, etcd)):
                limit = _get(res, "rejoin_after_load", "rejoin_timeout_s")
                if limit is not None and (a, b, c)[j] is None:
                    shown[j] = f">{limit:.0f} NO"
        lines.append(
            f"{label:30} {shown[0]:>10} {shown[1]:>10} {shown[2]:>10}"
            f" {ratios[0]:>13} {ratios[1]:>9}  {better}"
        )
    kills = [_get(r, "failover", "kills") for r in (px, pso, etcd)]
    lines.append(f"(fail-over kills: paxline {kills[0]}, PySyncObj {kills[1]}, etcd {kills[2]})")

    targets: list[dict[str, Any]] = []

    def target(name: str, value: Any, goal: str, met: bool | None) -> None:
        targets.append({"target": name, "value": value, "goal": goal, "met": met})

    ours_hi = _get(px, "load", str(hi), "ops_per_s")
    for peer, res in (("PySyncObj", pso), ("etcd", etcd)):
        theirs = _get(res, "load", str(hi), "ops_per_s")
        met = None if not ours_hi or not theirs else ours_hi >= 2 * theirs
        val = None if met is None else round(ours_hi / theirs, 2)
        target(f"commits/s at {hi} clients >= 2x {peer}", val, ">= 2.0x", met)
    p99 = _get(px, "load", str(lo), "p99_ms")
    target(f"p99 with {lo} client < 10 ms", p99, "< 10 ms", None if p99 is None else p99 < 10)
    fo = _get(px, "failover", "median_s")
    target("median fail-over < 1.0 s", fo, "< 1.0 s", None if fo is None else fo < 1.0)
    lines.append("")
    lines.append("targets:")
    for t in targets:
        status = {True: "MET   ", False: "MISSED", None: "n/a   "}[t["met"]]
        v = t["value"]
        text = "-" if v is None else (f"{v:.2f}x" if "2x" in t["target"] else f"{v:.3f}")
        lines.append(f"  {status} {t['target']:36} measured {text} (goal {t['goal']})")
    return "\n".join(lines), targets


# -------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per phase")
    p.add_argument("--clients", default="1,64", help="comma-separated client counts")
    p.add_argument("--kills", type=int, default=10, help="paxline leader kills")
    p.add_argument("--etcd-kills", type=int, default=10, help="etcd leader kills (0: skip)")
    p.add_argument(
        "--pysyncobj-kills", type=int, default=10, help="PySyncObj leader kills (0: skip)"
    )
    p.add_argument(
        "--zookeeper-kills", type=int, default=10, help="ZooKeeper leader kills (0: skip)"
    )
    p.add_argument("--only", default="paxline,pysyncobj,etcd,zookeeper", help="systems to run")
    p.add_argument(
        "--no-rejoin-check",
        dest="rejoin_check",
        action="store_false",
        help="skip the post-load kill of the leader and rejoin of the killed node",
    )
    p.add_argument(
        "--rejoin-timeout",
        type=float,
        default=45.0,
        help="seconds a restarted node gets to rejoin after the load phases",
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=0.25,
        help="before each load phase, wait until other processes use at most this many "
        "cores (the machine is shared)",
    )
    p.add_argument(
        "--quiet-wait", type=float, default=90.0, help="longest wait for that, in seconds"
    )
    p.add_argument(
        "--paxline-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra environment for the paxline nodes (experiments; repeatable)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    p.add_argument("--workdir", help="data directories (default: a fresh temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument(
        "--py-spy",
        metavar="PATH",
        help="record the paxline leader with py-spy during the largest load phase "
        "(.svg flamegraph, .json speedscope, .txt collapsed stacks); perturbs the figures",
    )
    args = p.parse_args()
    args.clients = [int(x) for x in args.clients.split(",") if x.strip()]
    args.paxline_env = [tuple(kv.split("=", 1)) for kv in args.paxline_env]
    args.only = {x.strip().lower() for x in args.only.split(",") if x.strip()}
    return args


def code_state() -> dict[str, Any]:
    """Which code is measured: the commit, uncommitted files, and source mtimes (other people
    edit this tree concurrently; a change during the run makes the figures mixed)."""
    root = _BENCH.parent
    state: dict[str, Any] = {}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "coordinator", "pipeline", "pyproject.toml"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        state["commit"] = head.stdout.strip() or None
        state["uncommitted"] = [ln[3:] for ln in dirty.stdout.splitlines() if ln.strip()]
    except OSError:
        pass
    # What the measured processes run: the coordinator package and the launcher.
    sources = [*(root / "coordinator").rglob("*.py"), *(root / "paxline/localstack").glob("*.py")]
    sources.append(root / "paxline/cli/main.py")
    state["mtimes"] = {str(f.relative_to(root)): f.stat().st_mtime for f in sources if f.exists()}
    return state


def machine_notes() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="paxline-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_notes(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "clients": args.clients,
            "kills": {
                "paxline": args.kills,
                "pysyncobj": args.pysyncobj_kills,
                "etcd": args.etcd_kills,
                "zookeeper": args.zookeeper_kills,
            },
        },
        "reference": REFERENCE,
        "skipped": {},
        "failed": {},
    }
    code_before = code_state()
    results["code"] = {k: v for k, v in code_before.items() if k != "mtimes"}
    m = results["machine"]
    log(
        f"code: commit {code_before.get('commit')}, uncommitted: "
        f"{', '.join(code_before.get('uncommitted', [])) or 'none'}"
    )
    b0 = lg.machine_busy_seconds()
    time.sleep(2.0)
    m["background_cpu_before"] = (lg.machine_busy_seconds() - b0) / 2.0
    log(
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}; data in {base}; "
        f"CPU busy before the run (other processes): {m['background_cpu_before'] * 100:.0f}% "
        "of one core"
    )
    try:

        def attempt(name: str, fn: Any, *fn_args: Any) -> None:
            # One system failing (e.g. a cluster that never settles) must not lose the others.
            try:
                results[name] = fn(*fn_args)
            except Exception as exc:
                results["failed"][name] = f"{type(exc).__name__}: {exc}"
                log(f"{name}: FAILED: {type(exc).__name__}: {exc}")

        if "paxline" in args.only:
            attempt("paxline", bench_paxline, args, base)
        if "pysyncobj" in args.only:
            try:
                import pysyncobj  # noqa: F401
            except ImportError:
                results["skipped"]["pysyncobj"] = "pysyncobj not installed (make bench-venv)"
            else:
                attempt("pysyncobj", bench_pysyncobj, args)
        if "etcd" in args.only:
            binary = etcd_binary()
            if binary is None:
                results["skipped"]["etcd"] = "etcd not found (apt-get install etcd-server)"
            else:
                attempt("etcd", bench_etcd, args, base, binary)
        if "zookeeper" in args.only:  # bench/_coordinator_zookeeper.py (issue 19)
            try:
                import kazoo  # noqa: F401
            except ImportError:
                results["skipped"]["zookeeper"] = "kazoo not installed (make bench-venv)"
            else:
                helpers = zkb.Helpers(
                    log,
                    wait_for_quiet,
                    failover_summary,
                    rejoin_check,
                    add_derived,
                    describe,
                    _wait,
                )
                attempt("zookeeper", zkb.bench_zookeeper, args, base, helpers)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    for name, why in results["skipped"].items():
        log(f"skipped {name}: {why}")
    for name, why in results["failed"].items():
        log(f"failed {name}: {why}")
    after = code_state()["mtimes"]
    changed = sorted(
        f
        for f in set(after) | set(code_before["mtimes"])
        if after.get(f) != code_before["mtimes"].get(f)
    )
    results["code"]["changed_during_run"] = changed
    if changed:
        log(f"WARNING: source changed during the run, figures may be mixed: {', '.join(changed)}")
    table, targets = report(results, args.clients)
    results["targets"] = targets
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    print()
    print(table)
    if "zookeeper" in results:
        print()
        print(zkb.report_zookeeper(results, args.clients))
    code = results["code"]
    print(
        f"\nwall time {results['elapsed_s']:.0f}s; code: commit {code.get('commit')}"
        + (f" + uncommitted {', '.join(code['uncommitted'])}" if code.get("uncommitted") else "")
        + (" (CHANGED DURING THE RUN)" if code.get("changed_during_run") else "")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
