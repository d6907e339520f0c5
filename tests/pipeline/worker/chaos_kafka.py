"""A 3-broker KRaft cluster for the chaos tests: real Apache Kafka, replication 3,
`min.insync.replicas=2`, nodes the tests SIGKILL and restart, and a second listener per
broker reached only through a `FaultProxy`.

Each broker listens twice: `PLAINTEXT` (brokers among themselves, the tests' producers and
the checker) and `PROXIED`, whose advertised address is the port of that broker's fault
proxy. A client that bootstraps from `proxied_bootstrap` learns only proxied addresses
(Kafka answers metadata with the listener the client came in on), so every byte between a
worker and the cluster passes a proxy the test can stall or reset, while the test's own
clients and replication stay untouched.

Properties come from the local stack's cluster template (`paxline.localstack.kafka`) with
the listeners extended, and shorter broker heartbeats: the controller fences a dead broker
after 4 s instead of 9 s, so leadership really moves within a test's outage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient
from fault_proxy import FaultProxy

from paxline.localstack import kafka as kl
from paxline.localstack.common import free_port, stop_pid, wait_until

__all__ = ["ChaosKafka"]

_FAST_FENCING = "broker.heartbeat.interval.ms=500\nbroker.session.timeout.ms=4000\n"


@dataclass
class Node:
    node_id: int
    data_dir: Path
    port: int  # PLAINTEXT, direct
    controller_port: int
    proxied_port: int  # PROXIED, the real socket behind the proxy
    proxy: FaultProxy
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def serves(self) -> bool:
        return kl.metadata_brokers("127.0.0.1", self.port) > 0


class ChaosKafka:
    def __init__(self, data_dir: Path, n: int = 3) -> None:
        self.data_dir = data_dir.resolve()
        self.libs = kl.fetch()
        self.cid = kl.cluster_id()
        self.nodes: dict[int, Node] = {}
        for i in range(1, n + 1):
            real = free_port()
            self.nodes[i] = Node(i, self.data_dir / f"node{i}", free_port(), free_port(), real,
                                 FaultProxy(real))  # fmt: skip
        voters = ",".join(f"{i}@127.0.0.1:{x.controller_port}" for i, x in self.nodes.items())
        for x in self.nodes.values():
            x.data_dir.mkdir(parents=True, exist_ok=True)
            props = kl._cluster_properties(x.data_dir, x.node_id, x.port, x.controller_port,
                                           voters, n)  # fmt: skip
            props = props.replace(
                f"listeners=PLAINTEXT://127.0.0.1:{x.port},",
                f"listeners=PLAINTEXT://127.0.0.1:{x.port},PROXIED://127.0.0.1:{x.proxied_port},",
            ).replace(
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{x.port}\n",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{x.port},"
                f"PROXIED://127.0.0.1:{x.proxy.port}\n",
            ).replace(
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                "PROXIED:PLAINTEXT",
            )  # fmt: skip
            assert "PROXIED://127.0.0.1" in props, "the cluster template changed its listeners"
            (x.data_dir / "server.properties").write_text(props + _FAST_FENCING)
            (x.data_dir / "log4j2.properties").write_text(
                kl._LOG4J2.format(log=x.data_dir / "kafka.log")
            )
            kl.format_storage(self.libs, x.data_dir, x.data_dir / "server.properties", self.cid)

    # ---------------------------------------------------------------------- addresses
    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{x.port}" for x in self.nodes.values())

    @property
    def proxied_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{x.proxy.port}" for x in self.nodes.values())

    # ---------------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 240.0) -> float:
        """Start every node that is not running; wait until each lists all brokers."""
        t0 = time.monotonic()
        for x in self.nodes.values():
            self._spawn(x)
        n = len(self.nodes)
        wait_until(lambda: all(kl.metadata_brokers("127.0.0.1", x.port) >= n
                               for x in self.nodes.values()),
                   timeout, f"{n} kafka brokers to list each other")  # fmt: skip
        return time.monotonic() - t0

    def _spawn(self, x: Node) -> None:
        if x.alive():
            return
        cmd = kl._java(self.libs, "kafka.Kafka", [str(x.data_dir / "server.properties")],
                       x.data_dir / "log4j2.properties")  # fmt: skip
        with open(x.data_dir / "kafka.out", "ab") as out:
            x.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        (x.data_dir / "kafka.pid").write_text(str(x.proc.pid))

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Stop one broker: SIGKILL (no clean shutdown: leaders vanish, logs need recovery)
        or SIGTERM (a controlled shutdown: leadership is moved away first)."""
        x = self.nodes[node_id]
        if x.alive():
            assert x.proc is not None
            os.kill(x.proc.pid, sig)
            x.proc.wait(90)

    def restart(self, node_id: int, timeout: float = 180.0) -> float:
        """Start a killed broker again on its data and ports; returns once it serves
        metadata (the moment the tests call "the broker is back")."""
        x = self.nodes[node_id]
        t0 = time.monotonic()
        self._spawn(x)

        def back() -> bool:
            if x.proc is not None and x.proc.poll() is not None:
                raise AssertionError(f"broker {node_id} exited on restart; see {x.data_dir}")
            return x.serves()

        wait_until(back, timeout, f"broker {node_id} to serve metadata again", interval=0.1)
        return time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM every node at once (one by one, the last node's controlled shutdown waits
        for a controller quorum that is already gone), then make sure each is gone."""
        for x in self.nodes.values():
            if x.alive():
                assert x.proc is not None
                x.proc.terminate()
        for x in self.nodes.values():
            stop_pid(x.data_dir / "kafka.pid", timeout=30.0)
            x.proxy.close()

    # ---------------------------------------------------------------------- inspection
    def leaders(self, topics: list[str]) -> Counter[int]:
        """How many partitions of `topics` each broker leads right now."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        meta = admin.list_topics(timeout=30)
        counts: Counter[int] = Counter()
        for t in topics:
            for p in meta.topics[t].partitions.values():
                if p.leader >= 0:
                    counts[p.leader] += 1
        return counts

    def wait_in_sync(self, topics: list[str], timeout: float = 120.0) -> None:
        """Every partition of `topics` has all brokers in sync again (a restarted broker
        caught up), so that the next fault starts from a healthy cluster."""
        n = len(self.nodes)

        def synced() -> bool:
            meta = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=10)
            return all(len(p.isrs) == n for t in topics for p in meta.topics[t].partitions.values())

        wait_until(synced, timeout, "every replica back in sync", interval=0.5)
