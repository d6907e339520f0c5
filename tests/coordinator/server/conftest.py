from __future__ import annotations

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
        c.discard()


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[CoordinatorClient]:
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as c:
        yield c
