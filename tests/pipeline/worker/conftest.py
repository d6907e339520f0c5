"""A whole local stack per test module: the session's Kafka and Redis, a fresh 3-node
coordinator cluster, and worker processes the tests start, kill and restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chaos_kafka import ChaosKafka
from e2e_stack import Stack

from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.kafka import KafkaBroker, stop_cluster
from paxline.localstack.redis import RedisServer


@pytest.fixture(scope="module")
def stack(
    kafka_broker: KafkaBroker,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(kafka_broker.bootstrap, redis_server.url, cluster, logs)
    try:
        yield s
    finally:
        s.stop_workers()
        cluster.discard()


@pytest.fixture(scope="session")
def chaos_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosKafka]:
    """The chaos tests' 3-broker cluster (chaos_kafka.py), started once per session. Each
    use finds every broker running and every proxy passing, whatever the last test did."""
    k = ChaosKafka(tmp_path_factory.mktemp("chaos-kafka"))
    try:
        took = k.start()
        print(f"\n3-broker chaos cluster ready in {took:.1f}s on {k.bootstrap}")
        yield k
    finally:
        # Its data is thrown away: no controlled shutdown (as the session's brokers in
        # tests/conftest.py), then `stop` finds the brokers gone and closes the proxies.
        stop_cluster(k.data_dir, grace=2.0)
        k.stop()


@pytest.fixture
def healthy_kafka(chaos_kafka: ChaosKafka) -> ChaosKafka:
    for node in chaos_kafka.nodes.values():
        node.proxy.heal()
    chaos_kafka.start()
    return chaos_kafka
