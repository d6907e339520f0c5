"""The worker's checkpoint path (`pipeline.checkpoint.commit_checkpoints`) against a real
3-node coordinator cluster: every (job, epoch) group of an interval goes in one batch request,
and a group fenced because one of its partitions moved to another worker costs only that
partition: the group's other partitions and every other group are committed (issue 17)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from coordinator.client import CoordinatorClient
from coordinator.commands import CheckpointBatchApplied, CheckpointGroup
from paxline.localstack.coordinators import LocalCluster
from pipeline.checkpoint import Pending, commit_checkpoints

pytestmark = pytest.mark.integration


class CountingClient(CoordinatorClient):
    """The real client, counting the batches it sends (each is one request, one command)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[list[CheckpointGroup]] = []

    def commit_checkpoint_batch(
        self, worker_id: str, groups: Sequence[CheckpointGroup]
    ) -> CheckpointBatchApplied:
        self.batches.append(list(groups))
        return super().commit_checkpoint_batch(worker_id, groups)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"})
    c.start()
    try:
        yield c
    finally:
        c.discard()


def _job(name: str, partitions: int) -> dict[str, object]:
    return {
        "name": name,
        "entrypoint": "examples.clicks:job",
        "sources": [{"topic": name, "partitions": partitions}],
        "sink": {"kind": "kafka", "topic": "out"},
    }


def test_a_fenced_group_in_a_batch_drops_only_the_partition_that_moved(
    cluster: LocalCluster,
) -> None:
    client = CountingClient(cluster.endpoints, token=cluster.token, timeout=20)
    with client:
        client.submit_job(_job("wc", 4))
        client.submit_job(_job("ads", 1))
        held = client.heartbeat("w1").assignment  # w1 alone: it holds all five
        assert len(held) == 5
        # w2 joins and takes some of wc under a new epoch; w1 has not heard yet, so its
        # pending wc group still names them at the old epoch.
        client.heartbeat("w2")
        moved = {(a.topic, a.partition) for a in client.heartbeat("w2").assignment}
        assert moved and all(topic == "wc" for topic, _ in moved)
        pending = [Pending(a.job, a.topic, a.partition, a.epoch, 100 + a.partition) for a in held]

        out = commit_checkpoints(client, "w1", pending)

        fenced = {(p.topic, p.partition) for p in out.fenced}
        committed = {(p.job, p.topic, p.partition) for p in out.committed}
        assert fenced == moved
        assert out.failed == []
        assert committed == {(a.job, a.topic, a.partition) for a in held} - {
            ("wc", t, i) for t, i in moved
        }
        # One batch for both groups, then one more with the fenced group's partitions as
        # singleton groups: never one request per group or per partition.
        assert [len(b) for b in client.batches] == [2, 4]
        agreed = {(p.topic, p.partition): p.offset for p in client.offsets("wc")}
        for topic, i in agreed:
            assert agreed[(topic, i)] == (None if (topic, i) in moved else 100 + i)
        assert client.offsets("ads")[0].offset == 100
