"""Checkpoint commits from several clients while the leader is killed with SIGKILL again and
again: commits resume after every kill, every acknowledged commit is still there at the end,
and the history of commits and offset reads is linearizable (checked with the simulator's
WGL checker, one partition = one register)."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from coordinator.client import CoordinatorClient, CoordinatorUnavailable
from coordinator.sim.linearizability import HistOp, check_key
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

PARTITIONS = 4
KILLS = 4
SPEC = {
    "name": "ledger",
    "entrypoint": "examples.ledger:job",
    "sources": [{"topic": "ledger", "partitions": PARTITIONS}],
    "sink": {"kind": "kafka", "topic": "ledger-out"},
}


@dataclass
class History:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: list[HistOp] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)  # partition -> highest acked offset
    acks: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, op: HistOp) -> None:
        with self.lock:
            self.ops.append(op)


def _now() -> int:
    return time.monotonic_ns()


def _writer(
    cluster: LocalCluster, epoch: int, partition: int, stop: threading.Event, h: History
) -> None:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        offset = 0
        while not stop.is_set():
            offset += 1
            invoke = _now()
            try:
                client.commit_checkpoint("ledger", "w1", epoch, {("ledger", partition): offset})
            except CoordinatorUnavailable:
                # Outcome unknown: it may take effect at any time after `invoke`.
                h.add(HistOp(f"w{partition}", str(partition), "put", str(offset), None,
                             invoke, None, None))  # fmt: skip
                continue
            except Exception as exc:
                h.errors.append(f"partition {partition} offset {offset}: {exc!r}")
                return
            h.add(HistOp(f"w{partition}", str(partition), "put", str(offset), None,
                         invoke, _now(), "ok"))  # fmt: skip
            with h.lock:
                h.acked[partition] = offset
                h.acks += 1


def _reader(cluster: LocalCluster, name: str, stop: threading.Event, h: History) -> None:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        while not stop.is_set():
            invoke = _now()
            try:
                parts = client.offsets("ledger")
            except CoordinatorUnavailable:
                continue  # a read that never answered constrains nothing
            response = _now()
            for p in parts:
                value = "" if p.offset is None else str(p.offset)
                h.add(HistOp(name, str(p.partition), "get", "", None, invoke, response, value))


def test_commits_survive_repeated_leader_kills_and_the_history_is_linearizable(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kills"), env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"}
    )
    cluster.start()
    stop = threading.Event()
    h = History()
    threads: list[threading.Thread] = []
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as admin:
            admin.submit_job(SPEC)
            epoch = int(admin.heartbeat("w1").assignment[0].epoch)
        for p in range(PARTITIONS):
            threads.append(threading.Thread(target=_writer, args=(cluster, epoch, p, stop, h)))
        for r in range(2):
            threads.append(threading.Thread(target=_reader, args=(cluster, f"r{r}", stop, h)))
        for t in threads:
            t.start()

        for kill in range(KILLS):
            before = h.acks
            wait_until(lambda b=before: h.acks >= b + 40, 30, f"commits before kill {kill + 1}")
            leader = cluster.wait_for_leader()
            cluster.kill(leader, signal.SIGKILL)
            after_kill = h.acks
            # Commits resume with the old leader still dead ...
            wait_until(lambda a=after_kill: h.acks >= a + 40, 30, f"commits after kill {kill + 1}")
            cluster.start_node(leader)  # ... and it rejoins for the next round.
            cluster.wait_for_leader(30)
        stop.set()
        for t in threads:
            t.join(30)
        assert not h.errors, h.errors

        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as admin:
            final = {p.partition: p.offset for p in admin.offsets("ledger")}
        for partition, acked in h.acked.items():
            assert final[partition] is not None and final[partition] >= acked, (
                f"acknowledged commit {acked} of partition {partition} lost; final {final}"
            )
        by_key: dict[str, list[HistOp]] = {}
        for op in h.ops:
            by_key.setdefault(op.key, []).append(op)
        for key, ops in sorted(by_key.items()):
            verdict = check_key(ops)
            assert verdict is True, f"partition {key}: linearizable={verdict} over {len(ops)} ops"
        assert h.acks >= KILLS * 80
    finally:
        stop.set()
        cluster.stop()
