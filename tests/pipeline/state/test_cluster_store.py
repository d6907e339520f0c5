"""The state store on a real Redis Cluster (issue 16; docs/architecture.md sec. 4, "Redis
deployments"): each partition's keys and scripts live in one slot (`{job:topic:partition}`),
so one job's partitions spread over the shards; a killed primary is a transient fault until
its replica is promoted, after which the partition's state is there; and a partition whose
state was written under the single-Redis layout reads as wiped (so the worker restores it
from the changelog) rather than as empty state.

One cluster (3 primaries, 1 replica each) for the module."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from paxline.localstack import redis_cluster
from paxline.localstack.common import wait_until
from paxline.localstack.redis import RedisServer
from pipeline.errors import StateUnavailable
from pipeline.state import RedisStores, StateKey
from pipeline.state.redis import EpochRedisStore, StateWiped

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_cluster.ClusterGroup]:
    d = Path(tmp_path_factory.mktemp("redis-cluster"))
    g = redis_cluster.start(d, replicas=1)
    try:
        yield g
    finally:
        redis_cluster.stop(d)


def _owner(raw: RedisCluster, key: str) -> int:
    node = raw.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def test_partitions_spread_over_the_shards_and_the_view_reads_as_one(
    cluster: redis_cluster.ClusterGroup,
) -> None:
    job = f"c{uuid.uuid4().hex[:6]}"
    stores = RedisStores(cluster.url)
    raw = RedisCluster.from_url(f"redis://127.0.0.1:{cluster.ports[0]}")
    owners = set()
    for p in range(12):
        s = stores.epoch_store(StateKey(job, "in", p), epoch=1, view="counts")
        s.take_over()
        assert s.apply({f"k{p}": b"1"}, {f"k{p}": str(p).encode()}, end_offset=10 + p)
        assert s.get_many([f"k{p}"]) == {f"k{p}": b"1"}
        assert s.applied_offset() == 10 + p
        owners.add(_owner(raw, f"paxline:{{{job}:in:{p}}}:state:in:{p}"))
    assert len(owners) == 3, f"12 partitions landed on {len(owners)} of 3 shards"
    assert stores.read_view(job, "counts") == {f"k{p}".encode(): str(p).encode() for p in range(12)}
    stores.close()


def test_a_killed_primary_stalls_the_partition_until_its_replica_is_promoted(
    cluster: redis_cluster.ClusterGroup,
) -> None:
    job = f"c{uuid.uuid4().hex[:6]}"
    stores = RedisStores(cluster.url)
    key = StateKey(job, "in", 0)
    s = stores.epoch_store(key, epoch=1)
    s.take_over()
    assert s.apply({"a": b"1"}, {}, end_offset=5)
    raw = RedisCluster.from_url(f"redis://127.0.0.1:{cluster.ports[0]}")
    primary = _owner(raw, f"paxline:{{{job}:in:0}}:state:in:0")
    with redis.Redis(port=primary) as direct:
        assert direct.wait(1, 5000) == 1  # the replica has the batch before the kill
    cluster.kill_node(cluster.ports.index(primary))
    with pytest.raises(StateUnavailable):
        s.apply({"a": b"2"}, {}, end_offset=6)
    deadline = time.monotonic() + 60
    while True:  # what the worker does: take over again until Redis serves
        try:
            s = stores.epoch_store(key, epoch=1)
            s.take_over()
            break
        except StateUnavailable:
            assert time.monotonic() < deadline, "the replica was never promoted"
            time.sleep(0.5)
    assert s.applied_offset() == 5
    assert s.get_many(["a"]) == {"a": b"1"}
    assert s.apply({"a": b"2"}, {}, end_offset=6)
    cluster.start_node(cluster.ports.index(primary))  # comes back as a replica
    wait_until(cluster.healthy, 60, "the cluster to heal")
    stores.close()


def test_state_under_the_single_redis_layout_reads_as_wiped_not_empty(
    redis_server: RedisServer, cluster: redis_cluster.ClusterGroup
) -> None:
    """Moving a deployment to a cluster changes every key name. The new layout must not
    look like a partition with no state (at-least-once would count from zero): it has no
    epoch, so reading raises StateWiped and the worker restores from the changelog."""
    job = f"c{uuid.uuid4().hex[:6]}"
    key = StateKey(job, "in", 0)
    old = EpochRedisStore(redis.Redis.from_url(redis_server.url), key, epoch=1)
    old.take_over()
    assert old.apply({"a": b"7"}, {}, end_offset=9)
    new = RedisStores(cluster.url).epoch_store(key, epoch=2)
    assert new.applied_offset() is None  # behind the committed point: restore
    with pytest.raises(StateWiped):
        new.get_many(["a"])
