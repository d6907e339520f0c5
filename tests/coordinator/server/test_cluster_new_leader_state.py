"""A newly elected leader must not act on state it has not applied yet (issue 11, item 1).

History from the issue: `deregister(w3)` is acknowledged by the leader, the leader is
SIGKILLed, then `heartbeat(w3)` through a survivor answers 200. A heartbeat tells the worker
that it is registered and owns what the answer lists; so after it the registry must list w3.

The heartbeat is sent the moment a survivor can serve it (no client back-off): that is when a
new leader has been elected but may not have applied what its predecessor chose."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.client import CoordinatorClient
from coordinator.commands import WorkerDeregistered
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

ROUNDS = 6


def _heartbeat_as_soon_as_served(cluster: LocalCluster, nodes: list[int], worker: str) -> Any:
    """Retry on every survivor without pausing until one answers something other than 503."""
    headers = {"Authorization": f"Bearer {cluster.token}"}
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            for n in nodes:
                url = f"{cluster.nodes[n].url}/v1/workers/{worker}/heartbeat"
                try:
                    resp = http.post(url, json={"capacity": 1024}, headers=headers)
                except httpx.HTTPError:
                    continue
                if resp.status_code != 503:
                    assert resp.status_code == 200, resp.text
                    return resp.json()
    raise AssertionError(f"no survivor of {nodes} served heartbeat({worker}) within 30 s")


def test_a_heartbeat_acknowledged_after_a_leader_change_registers_the_worker(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(tmp_path / "c", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"})
    cluster.start()
    try:
        with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as client:
            for w in ("w1", "w2", "w3"):
                client.heartbeat(w)
            for round_ in range(ROUNDS):
                leader = cluster.wait_for_leader()
                assert isinstance(client.deregister("w3"), WorkerDeregistered)
                cluster.kill(leader, signal.SIGKILL)
                survivors = [n for n in cluster.nodes if n != leader]
                answer = _heartbeat_as_soon_as_served(cluster, survivors, "w3")
                assert answer["worker_id"] == "w3"
                workers = sorted(w.worker_id for w in client.workers())
                assert workers == ["w1", "w2", "w3"], (
                    f"round {round_}: heartbeat(w3) answered {answer} after the leader change, "
                    f"but the registry lists {workers}"
                )
                cluster.start_node(leader)
                cluster.wait_for_leader()
    finally:
        cluster.stop()
