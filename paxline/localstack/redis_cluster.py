"""Start and stop a local Redis Cluster: 3 primaries, each with `replicas` replicas (issue 16).

`redis-server --cluster-enabled yes` per node (AOF on, like the single Redis), then
`redis-cli --cluster create ... --cluster-replicas N`. Node timeout 2 s, so a killed primary's
replica is promoted within a few seconds. The state store reaches it as
`redis+cluster://127.0.0.1:port,...` (pipeline/state/url.py).

    python -m paxline.localstack.redis_cluster start|stop [--data-dir DIR] [--replicas N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack import redis as redis_launcher
from paxline.localstack.common import ServiceError, free_port, port_open, read_pid, wait_until
from paxline.localstack.redis_sentinel import command

__all__ = ["ClusterGroup", "start", "stop"]

NODE_TIMEOUT_MS = 2000
PRIMARIES = 3


@dataclass
class ClusterGroup:
    data_dir: Path
    ports: list[int]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node_dir(self, i: int) -> Path:
        return self.data_dir / f"node{i}"

    def start_node(self, i: int) -> None:
        """Start (or restart: nodes.conf keeps its identity) node i."""
        redis_launcher.start(self.node_dir(i), self.ports[i], extra=_cluster_options())

    def kill_node(self, i: int) -> None:
        pid = read_pid(self.node_dir(i) / "redis.pid")
        if pid is None:
            raise ServiceError(f"redis cluster node{i} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not port_open(self.ports[i]), 30, f"redis node{i} to die")
        (self.node_dir(i) / "redis.pid").unlink(missing_ok=True)

    def _info(self, port: int, section: str) -> dict[str, str]:
        try:
            text = str(command(port, "CLUSTER", "INFO") if section == "cluster" else
                       command(port, "INFO", section))  # fmt: skip
        except (OSError, ServiceError):
            return {}
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def primaries(self) -> list[int]:
        """Ports of the nodes that are primaries now (alive ones)."""
        return [p for p in self.ports if self._info(p, "replication").get("role") == "master"]

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok and there are 3 primaries."""
        alive = [p for p in self.ports if port_open(p)]
        if len(self.primaries()) < PRIMARIES:
            return False
        return all(self._info(p, "cluster").get("cluster_state") == "ok" for p in alive)


def _node_port(taken: set[int]) -> int:
    """A free port a cluster node can use: its bus listens on port + 10000, so <= 55535, and
    neither may be a port or bus port of a node started before it (`taken`)."""
    while True:
        port = free_port()
        if port <= 55535 and not port_open(port + 10000) and not {port, port + 10000} & taken:
            return port


def _start_new_node(group: ClusterGroup, i: int, attempts: int = 5) -> None:
    """Node i on a port chosen just before it starts; another port if that one was taken
    in between (seen in CI: a port chosen up front was in use when the node started)."""
    for attempt in range(attempts):
        taken = {p for q in group.ports for p in (q, q + 10000)}
        group.ports.append(_node_port(taken))
        try:
            group.start_node(i)
            return
        except redis_launcher.PortTaken:
            group.ports.pop()
            if attempt == attempts - 1:
                raise


def _cluster_options() -> list[str]:
    return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]  # fmt: skip


def start(data_dir: Path, replicas: int = 1, timeout: float = 90.0) -> ClusterGroup:
    """A fresh cluster of 3 primaries with `replicas` replicas each; returns once every node
    reports cluster_state:ok."""
    data_dir = data_dir.resolve()
    stop(data_dir)
    for old in data_dir.glob("node*"):
        shutil.rmtree(old)
    group = ClusterGroup(data_dir, [])
    try:
        for i in range(PRIMARIES * (1 + replicas)):
            _start_new_node(group, i)
        _create(group, replicas, timeout)
    except BaseException:
        stop(data_dir)  # no half-started cluster left running
        raise
    (data_dir / "group").write_text(" ".join(map(str, group.ports)))
    return group


def _create(group: ClusterGroup, replicas: int, timeout: float) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServiceError("redis-cli is not installed: run scripts/install-deps")
    args = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in group.ports),
            "--cluster-replicas", str(replicas), "--cluster-yes"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout)
    if proc.returncode != 0:
        raise ServiceError(f"redis-cli --cluster create failed: {proc.stdout}{proc.stderr}")
    wait_until(group.healthy, timeout, "the Redis Cluster to report cluster_state:ok")


def stop(data_dir: Path) -> bool:
    data_dir = data_dir.resolve()
    stopped = False
    for d in sorted(data_dir.glob("node*")):
        stopped |= redis_launcher.stop(d)
    (data_dir / "group").unlink(missing_ok=True)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redis_cluster", description=__doc__)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--data-dir", type=Path, default=Path(".paxline/redis-cluster"))
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            g = start(args.data_dir, args.replicas)
            print(f"redis cluster on {g.ports}; state store URL {g.url}")
        else:
            print("stopped" if stop(args.data_dir) else "nothing was running")
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def prepare(data_dir: Path) -> tuple[str, list[tuple[str, list[str], str, int]]]:
    """Foreground commands for `paxline up --redis cluster` (the supervisor runs them):
    (state-store URL, [(name, argv, log file, port)]) for 6 nodes. Ports and each node's
    nodes.conf are kept from the last run; `create_once` forms the cluster the first time."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = redis_launcher.ensure_installed()
    f = data_dir / "group"
    ports = [int(p) for p in f.read_text().split()] if f.exists() else []
    if not ports:
        for _ in range(PRIMARIES * 2):  # no node's port is another's bus port
            ports.append(_node_port({p for q in ports for p in (q, q + 10000)}))
        f.write_text(" ".join(map(str, ports)))
    group = ClusterGroup(data_dir, ports)
    out: list[tuple[str, list[str], str, int]] = []
    for i, port in enumerate(ports):
        d = group.node_dir(i)
        d.mkdir(parents=True, exist_ok=True)
        argv = [*redis_launcher.command(binary, d, port, daemonize=False), *_cluster_options()]
        out.append((f"redis-{i}", argv, str(d / "redis.log"), port))
    return group.url, out


def create_once(data_dir: Path, timeout: float = 90.0) -> None:
    """Form the cluster (3 primaries, 1 replica each) unless its nodes already have slots;
    then wait for cluster_state:ok."""
    group = status(data_dir)
    if group is None:
        raise ServiceError(f"no redis cluster planned in {data_dir}")
    info = group._info(group.ports[0], "cluster")
    if info.get("cluster_slots_assigned", "0").strip() == "0":
        _create(group, 1, timeout)
    wait_until(group.healthy, timeout, "the Redis Cluster to report cluster_state:ok")


def status(data_dir: Path) -> ClusterGroup | None:
    f = data_dir.resolve() / "group"
    if not f.exists():
        return None
    return ClusterGroup(data_dir.resolve(), [int(p) for p in f.read_text().split()])
