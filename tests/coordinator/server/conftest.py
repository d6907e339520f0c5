from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.client import CoordinatorClient
from paxline.localstack.coordinators import LocalCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "30"})
    c.start()
    try:
        yield c
    finally:
        _discard(c)


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[CoordinatorClient]:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as c:
        yield c


def _discard(cluster: LocalCluster) -> None:
    """Ends a test cluster whose data goes with the test's temp dir: SIGKILL, no graceful
    stop. A SIGTERMed node waits up to ~2-3 s for its keep-alive connections to close
    (coordinator/server/main.py, timeout_graceful_shutdown); nothing here reads what a clean
    stop would leave on disk. Tests that check stopping do so themselves."""
    for node_id in list(cluster.nodes):
        cluster.kill(node_id, signal.SIGKILL)
