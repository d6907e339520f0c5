"""ZooKeeper (Zab) as a peer in `bench/coordinator.py`: a real local 3-server ensemble.

The servers are Apache ZooKeeper 3.9.5 from Maven Central (`org.apache.zookeeper:zookeeper`,
its runtime dependencies and `slf4j-simple` so the servers log to their log files), fetched
once by `mvn` into ~/.cache/paxline/zookeeper/<version>/libs, every jar checked against the
SHA-256 pinned below (a jar that differs stops the bench with the jar's name). Each server
listens on its own 127.0.0.1 ports with its own data directory and ZooKeeper's defaults
otherwise: `forceSync=yes` (fsync before every ack), `tickTime=2000`, `initLimit=10`,
`syncLimit=5`, the leader serves clients. The only changes: no admin HTTP server (it would
take port 8080), `maxClientCnxns=0` (the default, 60 per IP, is below our 64 clients plus
the probe, all from 127.0.0.1) and the `srvr` four-letter word whitelisted (how the bench
finds the leader and its zxid).

Driven like etcd (see `bench/coordinator.py`): a write is a `setData` of a per-client znode
(value: a decimal offset, as etcd's put), through `kazoo`; the load generator runs in its
own process, N closed-loop clients, each its own ZooKeeper session connected to the leader
(as the etcd clients talk to the leader), at most one write outstanding each. Fail-over:
kill -9 the leader, then every 20 ms start a write on one of three sessions that know all
three servers and reconnect every 20 ms (kazoo's default back-off would add seconds of
client delay); the time to the first acknowledged write is the fail-over time.

    scripts/zookeeper fetch        # the jars (bench/coordinator.py also fetches on first use)

`bench_zookeeper` is called by `bench/coordinator.py` (`--only ...,zookeeper`), with that
script's helpers passed in (`Helpers`): this file is imported by the script, never the other
way round, so the two stay separately editable.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
if str(_BENCH.parent) not in sys.path:  # run as `python bench/_coordinator_zookeeper.py`
    sys.path.insert(0, str(_BENCH.parent))

import _coordinator_loadgen as lg  # noqa: E402

from paxline.localstack import maven  # noqa: E402
from paxline.localstack.common import free_port  # noqa: E402
from paxline.localstack.maven import cache_root  # noqa: E402

__all__ = [
    "VERSION",
    "Helpers",
    "ZooKeeperEnsemble",
    "bench_zookeeper",
    "fetch",
    "java_binary",
    "report_zookeeper",
    "run_load",
]

VERSION = "3.9.5"
SLF4J_VERSION = "2.0.13"  # the slf4j-api version zookeeper 3.9.5 depends on
HEAP = "-Xms128m -Xmx512m"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.paxline</groupId><artifactId>zookeeper-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.zookeeper</groupId><artifactId>zookeeper</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>io.dropwizard.metrics</groupId><artifactId>metrics-core</artifactId>
      <version>4.1.12.1</version></dependency>
    <dependency><groupId>org.xerial.snappy</groupId><artifactId>snappy-java</artifactId>
      <version>1.1.10.7</version></dependency>
  </dependencies>
</project>
"""

# SHA-256 of every jar `mvn dependency:copy-dependencies` brings for the POM above (runtime
# scope), recorded on the first fetch (2026-12-04). Maven checks Central's SHA-1 files; this
# pins the exact bytes on top.
PINNED_SHA256 = {
    "audience-annotations-0.12.0.jar": (
        "ffb101fc066360ff3c77457c927fd7967fb096a6ee9e046ab7071447d8208efc"
    ),
    "commons-io-2.17.0.jar": "4aa4ca48f3dfd30b78220b7881d8cb93eac4093ec94361b6befa9487998a550b",
    "metrics-core-4.1.12.1.jar": (  # `provided` in zookeeper's POM, needed by the server
        "cec34936faa625039f4e46123eccaa10a9eb9d9a40c6075830cd81330e259cf9"
    ),
    "netty-buffer-4.1.130.Final.jar": (
        "00a522b67ea35cb7b4dd9cf27f85c6c58f5e306785aa045302e5f6b2d4944a87"
    ),
    "netty-codec-4.1.130.Final.jar": (
        "52636bc29bd62120b97bbe5d1d21eab9b1cb2bef8efbb54d2221c5f3fa08d8cd"
    ),
    "netty-common-4.1.130.Final.jar": (
        "53921f28dd5a352b1bed0e1cbcc54d013dc60ffebeae9b2b1e53eabef317e581"
    ),
    "netty-handler-4.1.130.Final.jar": (
        "98c78ec187ca30a4b9775bf6f632f5c9929db6bf06a60e6971f945813880ca0f"
    ),
    "netty-resolver-4.1.130.Final.jar": (
        "48c5b218a89d184e1b601d46433957f515fcefdb4464182b1348bce4f5a18f35"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final-linux-aarch_64.jar": (
        "11dfee82cfcb5c4f596271fe1d56a70fe77b4034e54162d0bd211623b540857f"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final-linux-x86_64.jar": (
        "39ac6b1eb4ffc18d5fe9412cc6253a8954bafc8e3ca10109bc370490f73a3673"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final-osx-aarch_64.jar": (
        "eef3fc7cdc5e2dc8c5cb50bae11443052bf1ee2f6e8b64378565746d1529f05e"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final-osx-x86_64.jar": (
        "e3beaa3ebdb136569528c59aa826d771efadc0ac9db484c6c0e457fa5efd0f07"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final-windows-x86_64.jar": (
        "5458b4b502763d49cd2e16c434312687178afac9c164cabf75c4a8bcecf7ac50"
    ),
    "netty-tcnative-boringssl-static-2.0.74.Final.jar": (
        "ec3b14ceff74c5d7e24a378e64074744cc5e7035c49cf6ca0a4e23dff9713d1f"
    ),
    "netty-tcnative-classes-2.0.74.Final.jar": (
        "194874cf723794dd409fd1e728cd91ffbcff0584d73b4d8a1ad0d69d04acf9b3"
    ),
    "netty-transport-4.1.130.Final.jar": (
        "1bf573266d271f856705a9984d25449c56a1d73c02a16af12033ceccfe555dbb"
    ),
    "netty-transport-classes-epoll-4.1.130.Final.jar": (
        "1c352508d70aca1ccc3068daac907ad1e9d8dc68b07148d57426730bf0d0c8b6"
    ),
    "netty-transport-native-epoll-4.1.130.Final-linux-x86_64.jar": (
        "d5d4611cb667eb215667c65aabfc75f8d9ef24de2a3e3a32eb28204f9c2a7a30"
    ),
    "netty-transport-native-unix-common-4.1.130.Final.jar": (
        "cf5efc4168597d7cd14695b469418cac2a1134533f9a0c82ef0538d796fd39e1"
    ),
    "snappy-java-1.1.10.7.jar": (  # `provided` too; the snapshot code loads it
        "4c766cb3f855415ee734b2392949a0b6f12a60879334a74518deaf6270d32e36"
    ),
    "slf4j-api-2.0.13.jar": "e7c2a48e8515ba1f49fa637d57b4e2f590b3f5bd97407ac699c3aa5efb1204a9",
    "slf4j-simple-2.0.13.jar": ("3153fe1d689cffb94f1530b58470c306685ba68844de8857116e3b6ebb81d9f7"),
    "zookeeper-3.9.5.jar": "936d025db1a85f085edea25048c3f5b3de5fc29329c371a10925e3b78b0b38a0",
    "zookeeper-jute-3.9.5.jar": (
        "abcbc7f9d6c493daa118da6fa3061a201e2c521217526e8535adfb56b629e52a"
    ),
}


def java_binary() -> str | None:
    return shutil.which("java")


def libs_dir(version: str = VERSION) -> Path:
    return cache_root() / "zookeeper" / version / "libs"


def verify(libs: Path) -> None:
    """Every pinned jar is present with its pinned bytes, and no other jar is."""
    maven.verify(libs, PINNED_SHA256, "zookeeper")


def fetch(version: str = VERSION, quiet: bool = False) -> Path:
    """Download the ensemble's jars once (hash-checked); later calls return the cache."""
    return maven.fetch_jars(
        libs_dir(version),
        _POM.format(version=version, slf4j=SLF4J_VERSION),
        PINNED_SHA256 if version == VERSION else None,
        f"Apache ZooKeeper {version}",
        quiet=quiet,
        required=f"zookeeper-{version}.jar",
    )


# ------------------------------------------------------------------------------ ensemble
def four_letter(port: int, word: str = "srvr", timeout: float = 1.0) -> str | None:
    """A four-letter-word command's answer, or None when the server does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                b = s.recv(4096)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


def parse_srvr(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


@dataclass
class ZkServer:
    sid: int
    client_port: int
    quorum_port: int
    election_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"z{self.sid}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ZooKeeperEnsemble:
    """A 3-server ensemble on 127.0.0.1 (see the module docstring for its configuration)."""

    def __init__(self, base_dir: Path, libs: Path, java: str = "java", size: int = 3) -> None:
        self.base_dir = base_dir.resolve()
        self.libs = libs
        self.java = java
        self.servers = {
            i: ZkServer(
                i,
                free_port(),
                free_port(),
                free_port(),
                self.base_dir / f"z{i}",
                self.base_dir / f"z{i}.log",
            )
            for i in range(1, size + 1)
        }

    @property
    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{s.client_port}" for s in self.servers.values())

    def _config(self, s: ZkServer) -> str:
        lines = [
            "tickTime=2000",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={s.data_dir}",
            f"clientPort={s.client_port}",
            "clientPortAddress=127.0.0.1",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr",
        ]
        lines += [
            f"server.{o.sid}=127.0.0.1:{o.quorum_port}:{o.election_port}"
            for o in self.servers.values()
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 60.0) -> int:
        for i in self.servers:
            self.start_server(i)
        return self.wait_for_leader(timeout)

    def start_server(self, i: int) -> None:
        s = self.servers[i]
        if s.alive():
            return
        s.data_dir.mkdir(parents=True, exist_ok=True)
        (s.data_dir / "myid").write_text(f"{s.sid}\n")
        cfg = self.base_dir / f"z{i}.cfg"
        cfg.write_text(self._config(s))
        cmd = [
            self.java,
            *HEAP.split(),
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            str(self.libs / "*"),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        with open(s.log_path, "ab") as log:
            s.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        s = self.servers[i]
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(sig)
            s.proc.wait(30)

    def stop(self) -> None:
        for i in self.servers:
            self.kill(i, signal.SIGTERM)

    def status(self, i: int) -> dict[str, str] | None:
        text = four_letter(self.servers[i].client_port)
        return None if text is None else parse_srvr(text)

    def leader(self) -> int | None:
        """The one live server in mode `leader`, when every other live one is a follower."""
        modes: dict[int, str] = {}
        for i, s in self.servers.items():
            if not s.alive():
                continue
            st = self.status(i)
            if st is None:
                return None
            modes[i] = st.get("Mode", "")
        leaders = [i for i, m in modes.items() if m == "leader"]
        if len(leaders) != 1 or any(m not in ("leader", "follower") for m in modes.values()):
            return None
        return leaders[0]

    def wait_for_leader(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.servers.values():
                if s.proc is not None and s.proc.poll() not in (None, -9, -15, 143):
                    raise RuntimeError(f"zookeeper {s.name} exited; see {s.log_path}")
            lead = self.leader()
            if lead is not None and lead != exclude:
                return lead
            time.sleep(0.05)
        raise TimeoutError(f"no zookeeper leader within {timeout}s; logs in {self.base_dir}")

    def all_caught_up(self) -> bool:
        """Every live server is up (leader or follower) and reports the same zxid."""
        views = [self.status(i) for i, s in self.servers.items() if s.alive()]
        if not all(v is not None for v in views):
            return False
        zx = {v.get("Zxid") for v in views if v}
        return len(zx) == 1 and self.leader() is not None

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers.values() if s.proc is not None]


# ------------------------------------------------------------------------------ clients
def _client(
    hosts: str, retry_every: float = 0.02, session_timeout: float = 10.0, handler: Any = None
) -> Any:
    from kazoo.client import KazooClient

    # kazoo logs every dropped connection; a leader kill drops dozens on purpose.
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    # Reconnect every `retry_every` s without back-off or jitter (kazoo's default backs off
    # exponentially, which would measure the client, not ZooKeeper).
    retry = {"max_tries": -1, "delay": retry_every, "backoff": 1, "max_jitter": 0.0}
    return KazooClient(
        hosts=hosts,
        timeout=session_timeout,
        connection_retry=retry,
        randomize_hosts=True,
        handler=handler,
    )


def ensure_nodes(hosts: str, paths: list[str]) -> None:
    zk = _client(hosts)
    zk.start(timeout=30)
    try:
        for p in paths:
            zk.ensure_path(p)
    finally:
        zk.stop()
        zk.close()


@dataclass
class _Window:
    start: float
    end: float


class _Chain:
    """One closed-loop client: the next write is sent from the previous one's callback."""

    def __init__(
        self,
        zk: Any,
        path: str,
        offset_base: int,
        window: _Window,
        lat: list[float],
        errors: dict[str, int],
        finished: threading.Semaphore,
    ) -> None:
        self.zk, self.path, self.offset_base = zk, path, offset_base
        self.window, self.lat, self.errors, self.finished = window, lat, errors, finished
        self.seq = 0
        self.t0 = 0.0

    def fire(self) -> None:
        if time.perf_counter() >= self.window.end:
            self.finished.release()
            return
        self.seq += 1
        self.t0 = time.perf_counter()
        self.zk.set_async(self.path, str(self.offset_base + self.seq).encode()).rawlink(self.done)

    def done(self, result: Any) -> None:
        t1 = time.perf_counter()
        exc = result.exception
        if exc is not None:
            key = type(exc).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
            threading.Timer(0.01, self.fire).start()
            return
        if self.window.start <= t1 < self.window.end:
            self.lat.append(t1 - self.t0)
        self.fire()


def _load(spec: dict[str, Any]) -> dict[str, Any]:
    from kazoo.handlers.threading import SequentialThreadingHandler

    n = spec["clients"]
    p = spec["params"]
    # All sessions share one callback/completion handler: 64 clients with a handler each
    # would be 192 Python threads fighting for the GIL on a 2-core machine.
    handler = SequentialThreadingHandler()
    clients = [_client(spec["hosts"], handler=handler) for _ in range(n)]
    for zk in clients:
        zk.start(timeout=30)
    lat: list[float] = []
    errors: dict[str, int] = {}
    finished = threading.Semaphore(0)
    watch = {name: int(pid) for name, pid in spec.get("watch_pids", {}).items()}
    begin = time.perf_counter()
    window = _Window(begin + spec["warmup"], begin + spec["warmup"] + spec["duration"])
    chains = [
        _Chain(zk, f"{p['path_prefix']}{i}", p["offset_base"], window, lat, errors, finished)
        for i, zk in enumerate(clients)
    ]
    for c in chains:
        c.fire()
    time.sleep(max(0.0, window.start - time.perf_counter()))
    c0, w0 = time.process_time(), {k: lg.cpu_seconds(pid) for k, pid in watch.items()}
    m0 = lg.machine_busy_seconds()
    time.sleep(max(0.0, window.end - time.perf_counter()))
    c1, w1 = time.process_time(), {k: lg.cpu_seconds(pid) for k, pid in watch.items()}
    m1 = lg.machine_busy_seconds()
    for _ in chains:
        finished.acquire(timeout=30)
    dur = spec["duration"]
    own = (c1 - c0) / dur
    cpu = {"loadgen_cpu": own, **lg.cpu_window(w0, w1, m0, m1, own, dur)}
    lat.sort()
    return {
        "clients": n,
        "duration": dur,
        "ops": len(lat),
        "ops_per_s": len(lat) / dur,
        "p50_ms": lg.percentile(lat, 0.50) * 1e3,
        "p99_ms": lg.percentile(lat, 0.99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "errors": errors,
        **cpu,
    }


def run_load(spec: dict[str, Any], out: Any) -> None:
    """multiprocessing target: run the load, send the figures, exit without closing the
    sessions one by one (they share a handler; the servers expire them)."""
    try:
        out.send(_load(spec))
    except BaseException as exc:  # report, never hang the parent
        out.send({"exception": f"{type(exc).__name__}: {exc}"})
    finally:
        out.close()
        os._exit(0)


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=run_load, args=(spec, send), name="zk-loadgen")
    proc.start()
    send.close()
    timeout = spec["warmup"] + spec["duration"] + 120
    if not recv.poll(timeout):
        proc.kill()
        raise RuntimeError(f"zookeeper load generator gave no answer within {timeout:.0f}s")
    result: dict[str, Any] = recv.recv()
    proc.join(10)
    if "exception" in result:
        raise RuntimeError(f"zookeeper load generator failed: {result['exception']}")
    return result


class FailoverProbe:
    """Three sessions that know every server; `run` starts a write every `every` s,
    round-robin over them, and returns (seconds since t0 of the first success, attempts)."""

    def __init__(self, hosts: str, path: str, sessions: int = 3) -> None:
        self.path = path
        self.clients = [_client(hosts) for _ in range(sessions)]
        for zk in self.clients:
            zk.start(timeout=30)
            zk.set(path, b"0")  # connected and able to write before the kill

    def run(self, t0: float, every: float = 0.02, limit: float = 60.0) -> tuple[float, int]:
        done = threading.Event()
        first: list[float] = []
        lock = threading.Lock()

        def on_result(result: Any) -> None:
            if result.exception is None:
                with lock:
                    if not first:
                        first.append(time.monotonic() - t0)
                done.set()

        i = 0
        deadline = t0 + limit
        while not done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("no zookeeper write succeeded before the probe deadline")
            zk = self.clients[i % len(self.clients)]
            with contextlib.suppress(Exception):
                zk.set_async(self.path, str(i).encode()).rawlink(on_result)
            i += 1
            done.wait(every)
        return first[0], i

    def close(self) -> None:
        for zk in self.clients:
            with contextlib.suppress(Exception):
                zk.stop()
                zk.close()


# --------------------------------------------------------------------------------- bench
@dataclass
class Helpers:
    """What `bench/coordinator.py` lends this module (so this one never imports it)."""

    log: Callable[[str], None]
    wait_for_quiet: Callable[[str, list[int], argparse.Namespace], float]
    failover_summary: Callable[[list[float], list[int]], dict[str, Any]]
    rejoin_check: Callable[..., dict[str, Any]]
    add_derived: Callable[[dict[str, Any]], dict[str, Any]]
    describe: Callable[[dict[str, Any]], str]
    wait: Callable[..., float | None]


def bench_zookeeper(args: argparse.Namespace, base: Path, h: Helpers) -> dict[str, Any]:
    java = java_binary()
    if java is None:
        raise RuntimeError("java not found (scripts/install-deps installs it)")
    libs = fetch()
    verify(libs)
    ens = ZooKeeperEnsemble(base / "zookeeper", libs, java)
    out: dict[str, Any] = {"load": {}, "failover": {}, "version": f"ZooKeeper {VERSION}"}
    kills = getattr(args, "zookeeper_kills", 10)

    def converged() -> bool:
        return ens.all_caught_up()

    def kill_leader_and_probe(tag: str) -> tuple[int, float, int]:
        leader = ens.wait_for_leader(30)
        probe = FailoverProbe(ens.hosts, f"/bench/{tag}")
        try:
            t0 = time.monotonic()
            ens.kill(leader)
            took, n_attempts = probe.run(t0)
        finally:
            probe.close()
        return leader, took, n_attempts

    t = time.monotonic()
    leader = ens.start()
    h.log(f"zookeeper: 3 servers up, leader z{leader} after {time.monotonic() - t:.1f}s")
    try:
        paths = [f"/bench/{n}/c{i}" for n in args.clients for i in range(n)]
        paths += [f"/bench/failover/{k}" for k in range(kills)] + ["/bench/rejoin"]
        ensure_nodes(ens.hosts, paths)
        times: list[float] = []
        attempts: list[int] = []
        if kills:
            out["failover_background_cpu"] = h.wait_for_quiet("zookeeper", ens.pids(), args)
        for k in range(kills):
            if h.wait(converged, 60) is None:
                raise RuntimeError("zookeeper did not converge before a kill")
            leader, took, n_attempts = kill_leader_and_probe(f"failover/{k}")
            times.append(took)
            attempts.append(n_attempts)
            new_leader = ens.wait_for_leader(60, exclude=leader)
            h.log(f"zookeeper: kill {k + 1}: z{leader} -> z{new_leader}: {took:.3f}s")
            ens.start_server(leader)
        out["failover"] = h.failover_summary(times, attempts)
        if h.wait(converged, 60) is None:
            raise RuntimeError("zookeeper did not converge after the kills")

        offset_base = 0
        for n in args.clients:
            leader = ens.wait_for_leader(30)
            offset_base += 10**9
            spec = {
                "hosts": f"127.0.0.1:{ens.servers[leader].client_port}",
                "clients": n,
                "warmup": args.warmup,
                "duration": args.duration,
                "params": {"path_prefix": f"/bench/{n}/c", "offset_base": offset_base},
                "watch_pids": {
                    ("leader" if i == leader else s.name): s.proc.pid
                    for i, s in ens.servers.items()
                    if s.proc is not None
                },
            }
            bg = h.wait_for_quiet("zookeeper", ens.pids(), args)
            r = run_loadgen(spec)
            r["background_cpu_before"] = bg
            out["load"][str(n)] = h.add_derived(r)
            h.log("zookeeper: " + h.describe(r))
        if args.rejoin_check and kills:
            out["rejoin_after_load"] = h.rejoin_check(
                "zookeeper",
                lambda: kill_leader_and_probe("rejoin"),
                ens.start_server,
                converged,
                args.rejoin_timeout,
            )
    finally:
        ens.stop()
    return out


# -------------------------------------------------------------------------------- report
def report_zookeeper(results: dict[str, Any], clients: list[int]) -> str:
    """paxline and ZooKeeper side by side, with paxline/ZooKeeper ratios."""
    px, zk = results.get("paxline"), results.get("zookeeper")

    def get(res: Any, *path: str) -> Any:
        for p in path:
            if not isinstance(res, dict) or p not in res:
                return None
            res = res[p]
        return res

    def fmt(v: Any, unit: str) -> str:
        if v is None or v != v:
            return "-"
        return {
            "ops": f"{v:,.0f}",
            "ms": f"{v:.2f}",
            "s": f"{v:.3f}",
            "us": f"{v:.0f}",
            "%": f"{v * 100:.0f}%",
        }[unit]

    rows: list[tuple[str, tuple[str, ...], str, str]] = []
    for n in sorted(set(clients)):
        c = f"{n} client{'s' if n > 1 else ''}"
        rows.append((f"commits/s, {c}", ("load", str(n), "ops_per_s"), "ops", "higher"))
        rows.append((f"p50 latency ms, {c}", ("load", str(n), "p50_ms"), "ms", "lower"))
        rows.append((f"p99 latency ms, {c}", ("load", str(n), "p99_ms"), "ms", "lower"))
    hi = max(clients)
    rows += [
        ("fail-over median s", ("failover", "median_s"), "s", "lower"),
        ("fail-over max s", ("failover", "max_s"), "s", "lower"),
        ("fail-over after load s", ("rejoin_after_load", "failover_s"), "s", "lower"),
        ("restarted node rejoins s", ("rejoin_after_load", "rejoin_s"), "s", "lower"),
        (f"load-gen CPU, {hi} clients", ("load", str(hi), "loadgen_cpu"), "%", ""),
        (f"leader CPU us/commit, {hi} cl.", ("load", str(hi), "leader_us_per_op"), "us", "lower"),
        (f"leader CPU, {hi} clients", ("load", str(hi), "watched_cpu", "leader"), "%", ""),
    ]
    header = f"{'':30} {'paxline':>10} {'ZooKeeper':>10} {'px/ZooKeeper':>13}  better"
    lines = [header, "-" * len(header)]
    for label, path, unit, better in rows:
        a, b = get(px, *path), get(zk, *path)
        ratio = "-" if not better or not a or not b else f"{a / b:.2f}x"
        lines.append(f"{label:30} {fmt(a, unit):>10} {fmt(b, unit):>10} {ratio:>13}  {better}")
    kills = [get(r, "failover", "kills") for r in (px, zk)]
    lines.append(f"(fail-over kills: paxline {kills[0]}, ZooKeeper {kills[1]})")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description="Fetch the ZooKeeper jars (hash-checked).")
    p.add_argument("command", choices=["fetch"])
    p.parse_args()
    libs = fetch()
    verify(libs)
    print(libs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
