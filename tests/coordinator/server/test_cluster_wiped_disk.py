"""A node whose data directory was wiped must never vote with the state it forgot (issue 11,
item 2).

History from the issue: commits acknowledged by two nodes while the third is down; one of the
two loses its disk and restarts under the same id; with the up-to-date node down, the wiped
node and the stale one could form a quorum and roll acknowledged offsets back."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from coordinator.client import CoordinatorClient
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

SPEC = {
    "name": "orders",
    "entrypoint": "examples.orders:job",
    "sources": [{"topic": "orders", "partitions": 2}],
    "sink": {"kind": "kafka", "topic": "orders-out"},
}


def _commit(client: CoordinatorClient, epoch: int, offset: int) -> None:
    client.commit_checkpoint("orders", "w1", epoch, {("orders", p): offset for p in range(2)})


def _history_with_a_wiped_disk(cluster: LocalCluster) -> tuple[int, int, int, int]:
    """Commit 10 on all nodes, 20 with `stale` down; then stop everything and wipe `wiped`.
    Returns (up_to_date, wiped, stale, epoch)."""
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as client:
        client.submit_job(SPEC)
        epoch = int(client.heartbeat("w1").assignment[0].epoch)
        _commit(client, epoch, 10)
        cluster.wait_all_applied()
        leader = cluster.wait_for_leader()
        stale = next(n for n in cluster.nodes if n != leader)
        wiped = next(n for n in cluster.nodes if n not in (leader, stale))
        cluster.kill(stale, signal.SIGKILL)
        _commit(client, epoch, 20)  # acknowledged by `leader` and `wiped` only
    cluster.stop()
    shutil.rmtree(cluster.nodes[wiped].data_dir)
    return leader, wiped, stale, epoch


def test_a_node_restarted_with_an_empty_data_dir_refuses_to_vote_and_no_commit_is_lost(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(tmp_path / "c")
    cluster.start()
    try:
        up_to_date, wiped, stale, _ = _history_with_a_wiped_disk(cluster)
        # The same command as before the disk was lost, with the up-to-date node still down.
        cluster.start_node(wiped)
        cluster.start_node(stale)
        node = cluster.nodes[wiped]
        wait_until(
            lambda: not node.alive() or cluster.leader() is not None,
            20,
            "the wiped node to exit or a leader to appear",
        )
        cluster.start_node(up_to_date)
        cluster.wait_for_leader(30, exclude=None) if node.alive() else None
        with CoordinatorClient(
            [cluster.nodes[up_to_date].url, cluster.nodes[stale].url], token=cluster.token,
            timeout=30,
        ) as client:  # fmt: skip
            offsets = {p.partition: p.offset for p in client.offsets("orders")}
        assert offsets == {0: 20, 1: 20}, f"acknowledged offset 20 lost: {offsets}"
        wait_until(lambda: not node.alive(), 20, "the wiped node to exit")
        assert node.proc is not None and node.proc.returncode not in (0, None)
        text = node.log_path.read_text()
        assert "Traceback" not in text
        refusal = [line for line in text.splitlines() if "--join" in line]
        assert len(refusal) == 1 and "empty" in refusal[0], text[-2000:]
    finally:
        cluster.stop()


def test_a_replaced_disk_rejoins_with_join_and_then_counts_towards_the_quorum(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(tmp_path / "c")
    cluster.start()
    try:
        up_to_date, wiped, stale, epoch = _history_with_a_wiped_disk(cluster)
        cluster.start_node(up_to_date)
        cluster.start_node(stale)
        cluster.start_node(wiped, join=True)  # the documented disk-replacement procedure
        cluster.wait_for_leader(30)
        cluster.wait_all_applied(30)
        # Now the replaced node's vote is needed: stop the up-to-date node.
        cluster.kill(up_to_date, signal.SIGKILL)
        with CoordinatorClient(
            [cluster.nodes[wiped].url, cluster.nodes[stale].url], token=cluster.token, timeout=30
        ) as client:
            _commit(client, epoch, 30)
            offsets = {p.partition: p.offset for p in client.offsets("orders")}
        assert offsets == {0: 30, 1: 30}
    finally:
        cluster.stop()
