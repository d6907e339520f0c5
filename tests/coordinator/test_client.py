"""The coordinator client under a lost quorum (coordinator/client.py), on a real 3-node
cluster: callers sharing one client never wait out each other's deadlines, and every call
in flight returns soon after a leader exists again (issue 13: a worker's checkpoint commit
held its shared client for 10 s while no leader existed, and lag 0 came 11 s after a 5 s
quorum loss)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from coordinator.client import CoordinatorClient, CoordinatorUnavailable
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def whole_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("client"),
                     env={"PAXLINE_WORKER_SESSION_TIMEOUT": "30"})  # fmt: skip
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(whole_cluster: LocalCluster) -> LocalCluster:
    """Every node running and a leader elected, whatever the previous test killed."""
    for node in whole_cluster.nodes:
        whole_cluster.start_node(node)
    whole_cluster.wait_for_leader(60)
    return whole_cluster


class Call(threading.Thread):
    """One heartbeat (a mutation) on a shared client, timed."""

    def __init__(self, client: CoordinatorClient, worker: str) -> None:
        super().__init__(daemon=True)
        self.client, self.worker = client, worker
        self.ended = 0.0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.client.heartbeat(self.worker)
        except Exception as exc:
            self.error = exc
        self.ended = time.monotonic()


def _lose_quorum(cluster: LocalCluster) -> None:
    for node in (2, 3):
        cluster.kill(node, signal.SIGKILL)


def test_a_caller_never_waits_out_another_callers_deadline(cluster: LocalCluster) -> None:
    _lose_quorum(cluster)
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=6) as client:
        first = Call(client, "w-first")
        first.start()
        time.sleep(0.3)  # let the first call be the one retrying (ordering, not waiting on I/O)
        t0 = time.monotonic()
        with pytest.raises(CoordinatorUnavailable):
            client.heartbeat("w-second")
        took = time.monotonic() - t0
        first.join(30)
    # Its own 6 s budget, not the first caller's remaining ~5.7 s on top (~11.7 s before).
    assert took < 8.0, f"the second call took {took:.1f}s"
    assert isinstance(first.error, CoordinatorUnavailable)


def test_calls_in_flight_return_soon_after_a_leader_is_elected_again(
    cluster: LocalCluster,
) -> None:
    _lose_quorum(cluster)
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=30) as client:
        calls = [Call(client, f"w-{i}") for i in range(4)]  # a worker's loop + 3 takeovers
        for c in calls:
            c.start()
        time.sleep(3)  # the outage itself: the calls retry against a cluster without quorum
        assert all(c.is_alive() for c in calls), "a call returned without a quorum"
        for node in (2, 3):
            cluster.start_node(node)
        cluster.wait_for_leader(60)
        elected = time.monotonic()
        for c in calls:
            c.join(30)
    errors = [c.error for c in calls if c.error is not None]
    assert not errors, errors
    late = max(c.ended for c in calls) - elected
    print(f"\nlast call returned {late:.2f}s after a leader was elected")
    assert late < 2.0, f"the last call returned {late:.2f}s after a leader was elected"
