"""Checkpoint commits, worker heartbeats and deregistrations from several clients while the
leader is killed with SIGKILL again and again: commits resume after every kill, every
acknowledged commit is still there at the end, and the history is linearizable (checked with
the simulator's WGL checker; linearizability is local, so each partition's offset and each
worker's registration is one register checked on its own).

The model, one register per key:

* partition p: `commit_checkpoint` = put(offset), `GET .../offsets` = get;
* worker w: a heartbeat registers w if it is unknown, so an acknowledged heartbeat = put("1");
  `deregister(w)` = cas("1" -> ""), answered `WorkerDeregistered` (true) or `UnknownWorker`
  (false); `GET /v1/workers` = get, "1" for every listed worker and "" for the others.

Workers w2 (re-registered and deregistered in a loop) and w3 (the scenario below) take
partitions from w1 whenever they register, so a writer commits as whoever owns its partition
and follows the owner when it is fenced (a fenced commit changes nothing).

Every kill round replays issue 11's item 1 on a quiet cluster: `deregister(w3)` is
acknowledged by the leader, the leader is SIGKILLed at once, `heartbeat(w3)` goes to the
survivors without pausing until one serves it, and a later `GET /v1/workers` must list w3."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from coordinator.sim.linearizability import HistOp, check_key
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

PARTITIONS = 4
KILLS = 4
WORKERS = ("w1", "w2", "w3")
SPEC = {
    "name": "ledger",
    "entrypoint": "examples.ledger:job",
    "sources": [{"topic": "ledger", "partitions": PARTITIONS}],
    "sink": {"kind": "kafka", "topic": "ledger-out"},
}


def worker_key(worker_id: str) -> str:
    return f"worker {worker_id}"


class Gate:
    """Lets the test quiet the background clients: `quiet()` stops new operations and waits
    (with a deadline) until the ones in flight have finished."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._active = 0

    @contextmanager
    def operation(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._open)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def quiet(self, timeout: float = 30) -> Iterator[None]:
        with self._cond:
            self._open = False
            if not self._cond.wait_for(lambda: self._active == 0, timeout):
                raise AssertionError(f"background clients still busy after {timeout} s")
        try:
            yield
        finally:
            with self._cond:
                self._open = True
                self._cond.notify_all()


@dataclass
class History:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: list[HistOp] = field(default_factory=list)
    acked: dict[int, int] = field(default_factory=dict)  # partition -> highest acked offset
    acks: int = 0
    errors: list[str] = field(default_factory=list)
    gate: Gate = field(default_factory=Gate)

    def add(self, op: HistOp) -> None:
        with self.lock:
            self.ops.append(op)


def _acks_reach(h: History, target: int) -> Callable[[], bool]:
    return lambda: h.acks >= target


def _now() -> int:
    return time.monotonic_ns()


# -------------------------------------------------------------------- worker registry ops


def _heartbeat(client: CoordinatorClient, name: str, worker_id: str, h: History) -> None:
    invoke = _now()
    try:
        client.heartbeat(worker_id)
    except CoordinatorUnavailable:
        h.add(HistOp(name, worker_key(worker_id), "put", "1", None, invoke, None, None))
        return
    h.add(HistOp(name, worker_key(worker_id), "put", "1", None, invoke, _now(), "ok"))


def _deregister(client: CoordinatorClient, name: str, worker_id: str, h: History) -> str | None:
    """Returns the result's name, None if the outcome is unknown."""
    invoke = _now()
    try:
        result = type(client.deregister(worker_id)).__name__
    except CoordinatorUnavailable:
        h.add(HistOp(name, worker_key(worker_id), "cas", "", "1", invoke, None, None))
        return None
    except RequestRejected as exc:
        if exc.result != "UnknownWorker":
            raise
        result = exc.result
    outcome = "true" if result == "WorkerDeregistered" else "false"
    h.add(HistOp(name, worker_key(worker_id), "cas", "", "1", invoke, _now(), outcome))
    return result


def _list_workers(client: CoordinatorClient, name: str, h: History) -> set[str] | None:
    invoke = _now()
    try:
        listed = {w.worker_id for w in client.workers()}
    except CoordinatorUnavailable:
        return None  # a read that never answered constrains nothing
    response = _now()
    for w in WORKERS:
        value = "1" if w in listed else ""
        h.add(HistOp(name, worker_key(w), "get", "", None, invoke, response, value))
    return listed


# -------------------------------------------------------------------- background clients


def _writer(cluster: LocalCluster, partition: int, stop: threading.Event, h: History) -> None:
    name = f"p{partition}"
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        owner: tuple[str, int] | None = None
        offset = 1
        while not stop.is_set():
            with h.gate.operation():
                if owner is None:
                    try:
                        parts = client.offsets("ledger")
                    except CoordinatorUnavailable:
                        continue
                    mine = next(p for p in parts if p.partition == partition)
                    owner = (str(mine.owner), mine.epoch)
                worker_id, epoch = owner
                invoke = _now()
                try:
                    client.commit_checkpoint(
                        "ledger", worker_id, epoch, {("ledger", partition): offset}
                    )
                except CoordinatorUnavailable:
                    # Outcome unknown: it may take effect at any time after `invoke`.
                    h.add(HistOp(name, str(partition), "put", str(offset), None,
                                 invoke, None, None))  # fmt: skip
                    offset += 1
                    continue
                except RequestRejected as exc:
                    if exc.result == "Fenced":  # ownership moved; nothing was written
                        owner = None
                        continue
                    h.errors.append(f"partition {partition} offset {offset}: {exc!r}")
                    return
                h.add(HistOp(name, str(partition), "put", str(offset), None,
                             invoke, _now(), "ok"))  # fmt: skip
                with h.lock:
                    h.acked[partition] = offset
                    h.acks += 1
                offset += 1


def _offset_reader(cluster: LocalCluster, name: str, stop: threading.Event, h: History) -> None:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        while not stop.is_set():
            with h.gate.operation():
                invoke = _now()
                try:
                    parts = client.offsets("ledger")
                except CoordinatorUnavailable:
                    continue
                response = _now()
                for p in parts:
                    value = "" if p.offset is None else str(p.offset)
                    op = HistOp(name, str(p.partition), "get", "", None, invoke, response, value)
                    h.add(op)


def _w2_comes_and_goes(cluster: LocalCluster, stop: threading.Event, h: History) -> None:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        while not stop.is_set():
            with h.gate.operation():
                _heartbeat(client, "w2", "w2", h)
            with h.gate.operation():
                _list_workers(client, "w2", h)
            with h.gate.operation():
                _deregister(client, "w2", "w2", h)
            stop.wait(0.2)  # pacing only: each change moves partitions and fences writers


def _registry_reader(cluster: LocalCluster, stop: threading.Event, h: History) -> None:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=8) as client:
        while not stop.is_set():
            with h.gate.operation():
                _list_workers(client, "registry", h)
            stop.wait(0.05)  # pacing only


# ------------------------------------------------------------------------- item 1 scenario


def _heartbeat_as_soon_as_served(
    cluster: LocalCluster, nodes: list[int], worker_id: str, h: History
) -> None:
    """Retry on every survivor without pausing until one answers something other than 503:
    that is when a new leader was elected but may not have applied its predecessor's choices."""
    headers = {"Authorization": f"Bearer {cluster.token}"}
    invoke = _now()
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            for n in nodes:
                url = f"{cluster.nodes[n].url}/v1/workers/{worker_id}/heartbeat"
                try:
                    resp = http.post(url, json={"capacity": 1024}, headers=headers)
                except httpx.HTTPError:
                    continue
                if resp.status_code != 503:
                    assert resp.status_code == 200, resp.text
                    op = HistOp("scenario", worker_key(worker_id), "put", "1", None,
                                invoke, _now(), "ok")  # fmt: skip
                    h.add(op)
                    return
    raise AssertionError(f"no survivor of {nodes} served heartbeat({worker_id}) within 30 s")


def test_commits_and_the_worker_registry_survive_repeated_leader_kills_linearizably(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("kills"), env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"}
    )
    cluster.start()
    stop = threading.Event()
    h = History()
    threads: list[threading.Thread] = []
    unlisted: list[str] = []
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as admin:
            _heartbeat(admin, "admin", "w1", h)
            admin.submit_job(SPEC)
            for p in range(PARTITIONS):
                threads.append(threading.Thread(target=_writer, args=(cluster, p, stop, h)))
            for r in range(2):
                threads.append(
                    threading.Thread(target=_offset_reader, args=(cluster, f"r{r}", stop, h))
                )
            threads.append(threading.Thread(target=_w2_comes_and_goes, args=(cluster, stop, h)))
            threads.append(threading.Thread(target=_registry_reader, args=(cluster, stop, h)))
            for t in threads:
                t.start()

            for kill in range(KILLS):
                before = h.acks
                wait_until(_acks_reach(h, before + 40), 30, f"commits before kill {kill + 1}")
                with h.gate.quiet():
                    leader = cluster.wait_for_leader()
                    _heartbeat(admin, "admin", "w3", h)
                    assert _deregister(admin, "admin", "w3", h) == "WorkerDeregistered"
                    cluster.kill(leader, signal.SIGKILL)
                    survivors = [n for n in cluster.nodes if n != leader]
                    _heartbeat_as_soon_as_served(cluster, survivors, "w3", h)
                    listed = _list_workers(admin, "admin", h)
                    if listed is not None and "w3" not in listed:
                        unlisted.append(f"kill {kill + 1}: {sorted(listed)}")
                after_kill = h.acks
                # Commits resume with the old leader still dead ...
                wait_until(_acks_reach(h, after_kill + 40), 30, f"commits after {kill + 1}")
                cluster.start_node(leader)  # ... and it rejoins for the next round.
                cluster.wait_for_leader(30)
            stop.set()
            for t in threads:
                t.join(30)
            assert not h.errors, h.errors

            final = {p.partition: p.offset for p in admin.offsets("ledger")}
        for partition, acked in h.acked.items():
            assert final[partition] is not None and final[partition] >= acked, (
                f"acknowledged commit {acked} of partition {partition} lost; final {final}"
            )
        by_key: dict[str, list[HistOp]] = {}
        for op in h.ops:
            by_key.setdefault(op.key, []).append(op)
        assert set(by_key) >= {str(p) for p in range(PARTITIONS)} | set(map(worker_key, WORKERS))
        for key, ops in sorted(by_key.items()):
            verdict = check_key(ops)
            assert verdict is True, f"{key}: linearizable={verdict} over {len(ops)} ops"
        assert not unlisted, f"heartbeat(w3) was answered after a leader kill, then: {unlisted}"
        assert h.acks >= KILLS * 80
    finally:
        stop.set()
        cluster.stop()
