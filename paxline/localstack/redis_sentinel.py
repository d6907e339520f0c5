"""Start and stop a local Redis primary, one replica and three Sentinels (issue 16).

The state store follows a failover through Sentinel (`redis+sentinel://` URLs,
pipeline/state/url.py). Sentinels are `redis-server --sentinel` - the same binary Debian's
`redis-sentinel` package links to, so `redis-server` is the only package needed. Nodes run
with AOF like the single Redis (paxline.localstack.redis). Failover is tuned for tests and
a laptop: a primary unreachable for 1 s is down, quorum 2 of 3.

    python -m paxline.localstack.redis_sentinel start|stop|status [--data-dir DIR]

This module speaks the few commands it needs in raw RESP: only pipeline.state imports redis.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from paxline.localstack import redis as redis_launcher
from paxline.localstack.common import (
    ServiceError,
    free_port,
    port_open,
    read_pid,
    stop_pid,
    wait_until,
)

__all__ = ["MASTER", "SentinelGroup", "command", "start", "stop"]

MASTER = "paxline"  # the Sentinel service name
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10000


def command(port: int, *args: str, timeout: float = 2.0) -> object:
    """Send one command to 127.0.0.1:port and return its decoded reply (str, int, list or
    None); raises OSError when the server does not answer, ServiceError on an error reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        s.sendall(out)
        reader = s.makefile("rb")
        return _read(reader)


def _read(f: object) -> object:
    line: bytes = f.readline()  # type: ignore[attr-defined]
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ServiceError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data: bytes = f.read(n + 2)  # type: ignore[attr-defined]
        return data[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise OSError(f"unexpected reply {line!r}")


@dataclass
class SentinelGroup:
    """Data nodes (node0 starts as primary, the others as its replicas) and three sentinels,
    all on 127.0.0.1, each in its own directory under `data_dir`."""

    data_dir: Path
    node_ports: list[int]
    sentinel_ports: list[int]

    def url(self, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        query = f"?wait_replicas={wait_replicas}&wait_timeout_ms={wait_timeout_ms}"
        return f"redis+sentinel://{hosts}/{MASTER}" + (query if wait_replicas else "")

    def node_dir(self, i: int) -> Path:
        return self.data_dir / f"node{i}"

    def primary_port(self) -> int | None:
        """The primary's port as the first answering sentinel sees it."""
        for p in self.sentinel_ports:
            try:
                reply = command(p, "SENTINEL", "get-master-addr-by-name", MASTER)
            except (OSError, ServiceError):
                continue
            if isinstance(reply, list) and len(reply) == 2:
                return int(str(reply[1]))
        return None

    def node_index(self, port: int) -> int:
        return self.node_ports.index(port)

    def kill_node(self, i: int) -> None:
        """SIGKILL data node i (chaos tests)."""
        pid = read_pid(self.node_dir(i) / "redis.pid")
        if pid is None:
            raise ServiceError(f"redis node{i} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.node_ports[i]), 30, f"redis node{i} to die")
        (self.node_dir(i) / "redis.pid").unlink(missing_ok=True)

    def start_node(self, i: int, replica_of: int | None = None) -> None:
        extra = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        redis_launcher.start(self.node_dir(i), self.node_ports[i], extra=extra)

    def replica_synced(self, i: int) -> bool:
        try:
            info = str(command(self.node_ports[i], "INFO", "replication"))
        except (OSError, ServiceError):
            return False
        return "role:slave" in info and "master_link_status:up" in info

    def ready(self) -> bool:
        """Every sentinel knows the primary, its replica and the two other sentinels (so a
        failover can be agreed)."""
        for p in self.sentinel_ports:
            try:
                reply = command(p, "SENTINEL", "master", MASTER)
            except (OSError, ServiceError):
                return False
            if not isinstance(reply, list):
                return False
            fields = dict(zip(reply[::2], reply[1::2], strict=True))
            if int(str(fields.get("num-slaves", 0))) < len(self.node_ports) - 1:
                return False
            if int(str(fields.get("num-other-sentinels", 0))) < 2:
                return False
        return True


def _sentinel_conf(d: Path, port: int, primary: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {d}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n"
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER} 1\n"
    )
    return conf


def start(data_dir: Path, replicas: int = 1, timeout: float = 60.0) -> SentinelGroup:
    """Start node0 (primary), `replicas` replicas of it and three sentinels; returns once
    the replicas are in sync and every sentinel sees the whole group. Fresh each time: a previous
    group under `data_dir` is stopped and its files removed."""
    data_dir = data_dir.resolve()
    stop(data_dir)
    for old in [*data_dir.glob("node*"), *data_dir.glob("sentinel*")]:
        shutil.rmtree(old)
    binary = redis_launcher.ensure_installed()
    nodes = [free_port() for _ in range(1 + replicas)]
    group = SentinelGroup(data_dir, nodes, [free_port() for _ in range(3)])
    group.start_node(0)
    for i in range(1, 1 + replicas):
        group.start_node(i, replica_of=group.node_ports[0])
    for i in range(1, 1 + replicas):
        wait_until(partial(group.replica_synced, i), timeout, f"Redis replica node{i} to sync")
    for i, port in enumerate(group.sentinel_ports):
        d = data_dir / f"sentinel{i}"
        conf = _sentinel_conf(d, port, group.node_ports[0])
        args = [binary, str(conf), "--sentinel", "--daemonize", "yes", "--pidfile",
                str(d / "sentinel.pid"), "--logfile", str(d / "sentinel.log")]  # fmt: skip
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServiceError(f"redis sentinel failed to start: {proc.stdout}{proc.stderr}")
    wait_until(group.ready, timeout, "the sentinels to see the primary, replica and each other")
    (data_dir / "group").write_text(
        " ".join(map(str, group.node_ports)) + "\n" + " ".join(map(str, group.sentinel_ports))
    )
    return group


def status(data_dir: Path) -> SentinelGroup | None:
    f = data_dir.resolve() / "group"
    if not f.exists():
        return None
    nodes, sentinels = (list(map(int, line.split())) for line in f.read_text().splitlines())
    return SentinelGroup(data_dir.resolve(), nodes, sentinels)


def stop(data_dir: Path) -> bool:
    """Stop every sentinel and node under `data_dir` (sentinels first, so that stopping the
    primary starts no failover)."""
    data_dir = data_dir.resolve()
    stopped = False
    for d in sorted(data_dir.glob("sentinel*")):
        stopped |= stop_pid(d / "sentinel.pid", timeout=10.0)
    for d in sorted(data_dir.glob("node*")):
        stopped |= redis_launcher.stop(d)
    (data_dir / "group").unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redis_sentinel", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=Path(".paxline/redis-sentinel"))
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            g = start(args.data_dir, args.replicas)
            print(f"redis primary :{g.node_ports[0]}, replicas {g.node_ports[1:]}, sentinels "
                  f"{g.sentinel_ports}; state store URL {g.url(wait_replicas=1)}")  # fmt: skip
        elif args.command == "stop":
            print("stopped" if stop(args.data_dir) else "nothing was running")
        else:
            running = status(args.data_dir)
            if running is None or running.primary_port() is None:
                print("redis sentinel group is not running")
                return 3
            print(f"primary on :{running.primary_port()}; URL {running.url()}")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def prepare(data_dir: Path) -> tuple[str, list[tuple[str, list[str], str, int]]]:
    """Foreground commands for `paxline up --redis sentinel` (the supervisor runs them):
    (state-store URL, [(name, argv, log file, port)]) for node0, node1 and three sentinels.
    Ports are kept from the last run. node1 is told to replicate node0 only on its first
    start; later the sentinels (their config files keep what they learnt) set the roles."""
    data_dir = data_dir.resolve()
    binary = redis_launcher.ensure_installed()
    previous = status(data_dir)
    group = previous or SentinelGroup(
        data_dir, [free_port(), free_port()], [free_port() for _ in range(3)]
    )
    (data_dir / "group").parent.mkdir(parents=True, exist_ok=True)
    (data_dir / "group").write_text(
        " ".join(map(str, group.node_ports)) + "\n" + " ".join(map(str, group.sentinel_ports))
    )
    out: list[tuple[str, list[str], str, int]] = []
    for i, port in enumerate(group.node_ports):
        d = group.node_dir(i)
        fresh = not d.exists()
        d.mkdir(parents=True, exist_ok=True)
        argv = redis_launcher.command(binary, d, port, daemonize=False)
        if i > 0 and fresh:
            argv += ["--replicaof", "127.0.0.1", str(group.node_ports[0])]
        out.append((f"redis-{i}", argv, str(d / "redis.log"), port))
    for i, port in enumerate(group.sentinel_ports):
        d = data_dir / f"sentinel{i}"
        conf = d / "sentinel.conf"
        if not conf.exists():
            _sentinel_conf(d, port, group.node_ports[0])
        argv = [binary, str(conf), "--sentinel", "--daemonize", "no",
                "--logfile", str(d / "sentinel.log")]  # fmt: skip
        out.append((f"sentinel-{i + 1}", argv, str(d / "sentinel.log"), port))
    return group.url(wait_replicas=1), out
