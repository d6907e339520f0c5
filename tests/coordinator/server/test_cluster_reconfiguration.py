"""Live reconfiguration against real processes (issue 17): a 3-node cluster grows to 5
(`paxline cluster add-node`, each new node started with `--join` on an empty disk), its
leader is SIGKILLed, it shrinks back to 3 (`remove-node` of a founder and of an added node,
then `replace-node` of a dead member by a new node on an empty disk), and its new leader is
killed again, all under a light checkpoint-commit load. At the end no acknowledged commit is
lost and every partition's history is linearizable (the simulator's WGL checker, as in
test_cluster_leader_kills.py). A removed node left running must not disrupt the members:
the leader's ballot does not move while commits go on.

Safety of the new nodes is the runtime's: a `--join` node takes part in nothing until its
peers' hellos say which cluster it joins and the floor above every ballot promised, and it
votes only once it has caught up to a leader above that floor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from coordinator.sim.linearizability import HistOp, check_key
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

PARTITIONS = 2
SPEC = {
    "name": "ledger",
    "entrypoint": "examples.ledger:job",
    "sources": [{"topic": "ledger", "partitions": PARTITIONS}],
    "sink": {"kind": "kafka", "topic": "ledger-out"},
}


class Endpoints:
    """The API URLs the load clients use, updated by the test as nodes come and go; a client
    that finds no node answering starts over with the current list."""

    def __init__(self, urls: list[str]) -> None:
        self._lock = threading.Lock()
        self._urls = list(urls)

    def set(self, urls: list[str]) -> None:
        with self._lock:
            self._urls = list(urls)

    def get(self) -> list[str]:
        with self._lock:
            return list(self._urls)


@dataclass
class History:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: list[HistOp] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)
    acks: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, op: HistOp) -> None:
        with self.lock:
            self.ops.append(op)


def _writer(eps: Endpoints, token: str, p: int, stop: threading.Event, h: History) -> None:
    """Commits offsets 1, 2, ... of partition `p` as its owner; follows the owner when fenced,
    and starts over with the current nodes when none answers."""
    name = f"p{p}"
    owner: tuple[str, int] | None = None
    offset = 1
    while not stop.is_set():
        with CoordinatorClient(eps.get(), token=token, timeout=8) as client:
            while not stop.is_set():
                try:
                    if owner is None:
                        mine = next(x for x in client.offsets("ledger") if x.partition == p)
                        owner = (str(mine.owner), mine.epoch)
                except CoordinatorUnavailable:
                    break
                invoke = time.monotonic_ns()
                try:
                    client.commit_checkpoint("ledger", owner[0], owner[1], {("ledger", p): offset})
                except CoordinatorUnavailable:  # outcome unknown
                    h.add(HistOp(name, str(p), "put", str(offset), None, invoke, None, None))
                    offset += 1
                    break
                except RequestRejected as exc:
                    if exc.result == "Fenced":
                        owner = None
                        continue
                    h.errors.append(f"partition {p} offset {offset}: {exc!r}")
                    stop.set()
                    return
                response = time.monotonic_ns()
                h.add(HistOp(name, str(p), "put", str(offset), None, invoke, response, "ok"))
                with h.lock:
                    h.acked[p] = offset
                    h.acks += 1
                offset += 1
                stop.wait(0.01)  # a light load: pacing only


def _reader(eps: Endpoints, token: str, stop: threading.Event, h: History) -> None:
    while not stop.is_set():
        with CoordinatorClient(eps.get(), token=token, timeout=8) as client:
            while not stop.is_set():
                invoke = time.monotonic_ns()
                try:
                    parts = client.offsets("ledger")
                except CoordinatorUnavailable:
                    break
                response = time.monotonic_ns()
                for x in parts:
                    value = "" if x.offset is None else str(x.offset)
                    op = HistOp(
                        "reader", str(x.partition), "get", "", None, invoke, response, value
                    )
                    h.add(op)
                stop.wait(0.02)  # pacing only


def _cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAXLINE_API_TOKEN": cluster.token}
    cmd = [sys.executable, "-m", "paxline.cli", "cluster", *args,
           "--coordinators", ",".join(cluster.endpoints)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=90, check=False)


def _change(cluster: LocalCluster, *args: str) -> str:
    done = _cli(cluster, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    assert "in effect" in done.stdout, done.stdout
    return done.stdout


def _members(cluster: LocalCluster, node: int) -> list[int] | None:
    view = cluster.status(node)
    membership = view.get("membership") if view else None
    return membership.get("members") if isinstance(membership, dict) else None


def _votes(cluster: LocalCluster, node: int) -> bool:
    view = cluster.status(node)
    return bool(view and view.get("voter") is True)


def _more_acks(h: History, n: int, what: str) -> None:
    target = h.acks + n
    wait_until(lambda: h.acks >= target, 30, what)


def test_grow_to_five_and_shrink_to_three_under_load_with_leader_kills(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = LocalCluster(tmp_path_factory.mktemp("reconfig"),
                           env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"})  # fmt: skip
    cluster.start()
    stop = threading.Event()
    h = History()
    threads: list[threading.Thread] = []
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as admin:
            admin.heartbeat("w1")
            admin.submit_job(SPEC)
        endpoints = Endpoints(cluster.endpoints)
        for p in range(PARTITIONS):
            threads.append(
                threading.Thread(target=_writer, args=(endpoints, cluster.token, p, stop, h))
            )
        threads.append(threading.Thread(target=_reader, args=(endpoints, cluster.token, stop, h)))
        for t in threads:
            t.start()
        _more_acks(h, 10, "commits on the founding 3 nodes")

        # Bad input: one line, exit 2, nothing proposed.
        bad = _cli(cluster, "add-node", "4=nohost")
        assert bad.returncode == 2 and bad.stderr.startswith("error: "), bad
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr

        # 3 -> 5: each new node joins on an empty disk, then is added; it votes once caught up.
        for _ in range(2):
            new = cluster.add_node()
            endpoints.set(cluster.endpoints)
            _change(cluster, "add-node", f"{new}=127.0.0.1:{cluster.nodes[new].peer_port}")
            wait_until(lambda n=new: _votes(cluster, n), 30, f"node {new} to vote")
            _more_acks(h, 10, f"commits with node {new} added")
        assert sorted(cluster.nodes) == [1, 2, 3, 4, 5]
        for n in cluster.nodes:
            wait_until(lambda n=n: _members(cluster, n) == [1, 2, 3, 4, 5], 20, f"node {n}")

        # A leader kill on the 5-node cluster.
        leader = cluster.wait_for_leader()
        cluster.kill(leader, signal.SIGKILL)
        _more_acks(h, 10, "commits after the kill on 5 nodes")
        cluster.start_node(leader)
        cluster.wait_for_leader(30)

        # 5 -> 4 -> 3: a founder and an added node leave; the founder stays up, removed.
        _change(cluster, "remove-node", "1")
        _change(cluster, "remove-node", "4")
        cluster.retire(4)
        for n in (2, 3, 5):
            wait_until(lambda n=n: _members(cluster, n) == [2, 3, 5], 20, f"node {n} shrinks")
        # Node 1 learns (at least) its own removal: the leader heartbeats it until it has.
        wait_until(lambda: 1 not in (_members(cluster, 1) or [1]), 20, "node 1 learns it left")
        leader = cluster.wait_for_leader(30)
        assert leader != 1
        ballot = (cluster.status(leader) or {}).get("ballot")
        _more_acks(h, 20, "commits with the removed node 1 still running")
        assert (cluster.status(leader) or {}).get("ballot") == ballot, "removed node disrupted"
        assert (cluster.status(1) or {}).get("voter") is False
        cluster.retire(1)

        # Member 3 dies for good; node 6, on an empty disk, takes its place in one change.
        cluster.retire(3, signal.SIGKILL)
        new = cluster.add_node()
        endpoints.set(cluster.endpoints)
        _change(cluster, "replace-node", "3", f"{new}=127.0.0.1:{cluster.nodes[new].peer_port}")
        wait_until(lambda: _votes(cluster, new), 30, f"node {new} to vote")
        _more_acks(h, 10, "commits after the replacement")

        # And one more leader kill on the final 3 nodes.
        leader = cluster.wait_for_leader(30)
        cluster.kill(leader, signal.SIGKILL)
        _more_acks(h, 10, "commits after the last kill")
        cluster.start_node(leader)
        cluster.wait_for_leader(30)
        for n in cluster.nodes:
            wait_until(lambda n=n: _members(cluster, n) == [2, 5, new], 20, f"node {n} final")

        stop.set()
        for t in threads:
            t.join(30)
        assert not h.errors, h.errors
        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as admin:
            final = {x.partition: x.offset for x in admin.offsets("ledger")}
        for p, acked in h.acked.items():
            assert final[p] is not None and final[p] >= acked, (
                f"acknowledged commit {acked} of partition {p} lost; final {final}"
            )
        by_key: dict[str, list[HistOp]] = {}
        for op in h.ops:
            by_key.setdefault(op.key, []).append(op)
        assert h.acks >= 80  # the load ran through every step
        assert set(by_key) == {str(p) for p in range(PARTITIONS)}
        for key, ops in sorted(by_key.items()):
            verdict = check_key(ops)
            assert verdict is True, f"partition {key}: linearizable={verdict} over {len(ops)} ops"
    finally:
        stop.set()
        cluster.stop()
