"""A real 3-node cluster on 127.0.0.1: state survives stopping and restarting every node, and a
node whose log ends in a torn or corrupted record truncates it and rejoins."""

from __future__ import annotations

import signal

import pytest

from coordinator.client import CoordinatorClient
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration

SPEC = {
    "name": "orders",
    "entrypoint": "examples.orders:job",
    "sources": [{"topic": "orders", "partitions": 4}],
    "sink": {"kind": "kafka", "topic": "orders-out"},
}


def _commit_some(client: CoordinatorClient, worker: str, upto: int) -> int:
    client.submit_job(SPEC)
    assignment = client.heartbeat(worker).assignment
    epoch = assignment[0].epoch
    for offset in range(1, upto + 1):
        client.commit_checkpoint("orders", worker, epoch, {("orders", p): offset for p in range(4)})
    return int(epoch)


def test_stopping_and_restarting_all_nodes_keeps_the_state(
    cluster: LocalCluster, client: CoordinatorClient
) -> None:
    epoch = _commit_some(client, "w1", upto=25)
    before = client.offsets("orders")
    cluster.stop()
    cluster.start()
    after = client.offsets("orders")
    assert after == before
    assert {p.offset for p in after} == {25}
    assert {p.epoch for p in after} == {epoch}
    # Still accepting work after the restart, with the same fencing.
    client.commit_checkpoint("orders", "w1", epoch, {("orders", 0): 26})
    assert client.offsets("orders")[0].offset == 26


@pytest.mark.parametrize("damage", ["torn", "corrupted"])
def test_a_damaged_log_tail_is_truncated_with_a_warning_and_the_node_rejoins(
    cluster: LocalCluster, client: CoordinatorClient, damage: str
) -> None:
    _commit_some(client, "w1", upto=10)
    cluster.wait_all_applied()
    leader = cluster.wait_for_leader()
    victim = next(i for i in cluster.nodes if i != leader)
    cluster.kill(victim, signal.SIGKILL)
    log_file = cluster.nodes[victim].data_dir / "paxos" / "paxos.log"
    data = bytearray(log_file.read_bytes())
    assert len(data) > 64
    if damage == "torn":
        data = data[:-7]
    else:
        data[-3] ^= 0xFF
    log_file.write_bytes(bytes(data))

    cluster.start_node(victim)
    client.commit_checkpoint("orders", "w1", client.offsets("orders")[0].epoch, {("orders", 1): 11})
    cluster.wait_all_applied()
    assert cluster.nodes[victim].alive()
    text = cluster.nodes[victim].log_path.read_text()
    assert "truncating torn tail" in text
    assert "Traceback" not in text
