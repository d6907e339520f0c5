"""Session fixtures: one real Apache Kafka broker and one real Redis per test run.

Both start lazily (only when an integration test asks), on free ports, in pytest's temporary
directory. Pytest keeps the last three base temp dirs, so after a failure the broker log is
still there; its path is printed in the summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paxline.localstack import kafka as kafka_launcher
from paxline.localstack import rabbitmq as rabbitmq_launcher
from paxline.localstack import redis as redis_launcher

_started: dict[str, str] = {}
# The session's brokers are thrown away with their data, so they need no controlled
# shutdown (which, for a cluster, waits on a controller quorum that is going away): SIGTERM,
# this many seconds, then SIGKILL.
DISCARD_GRACE = 2.0


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka_launcher.KafkaBroker]:
    data_dir = tmp_path_factory.mktemp("kafka")
    broker = kafka_launcher.start(data_dir)
    _started["kafka"] = (
        f"Apache Kafka {broker.version} (real broker, KRaft) on {broker.bootstrap}, "
        f"ready in {broker.startup_seconds:.1f}s; log: {broker.log_file}"
    )
    try:
        yield broker
    finally:
        kafka_launcher.stop(data_dir, grace=DISCARD_GRACE)


@pytest.fixture(scope="module")
def kafka_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[kafka_launcher.KafkaCluster]:
    """Opt-in (only tests that ask for it): a 3-broker KRaft cluster, RF 3, min ISR 2, made
    by the launcher's own `start_cluster` (what it tests). Per module: its user SIGKILLs a
    broker, and three idle JVMs kept to the end of the session would slow every later test
    on a 2-core machine. The chaos tests share their own cluster (`chaos_kafka`)."""
    data_dir = tmp_path_factory.mktemp("kafka3")
    cluster = kafka_launcher.start_cluster(data_dir, 3)
    _started["kafka3"] = (
        f"3-broker Kafka cluster on {cluster.bootstrap}, ready in "
        f"{cluster.brokers[0].startup_seconds:.1f}s; logs under {data_dir}"
    )
    try:
        yield cluster
    finally:
        kafka_launcher.stop_cluster(data_dir, grace=DISCARD_GRACE)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: kafka_launcher.KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_launcher.RedisServer]:
    data_dir = tmp_path_factory.mktemp("redis")
    server = redis_launcher.start(data_dir)
    _started["redis"] = (
        f"Redis {server.version} (AOF on) on 127.0.0.1:{server.port}; "
        f"log: {Path(data_dir) / 'redis.log'}"
    )
    try:
        yield server
    finally:
        redis_launcher.stop(data_dir)


@pytest.fixture(scope="session")
def rabbitmq_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[rabbitmq_launcher.RabbitNode]:
    """Issue 19: one private RabbitMQ node (Debian's rabbitmq-server, stream plugin on)."""
    data_dir = tmp_path_factory.mktemp("rabbitmq")
    node = rabbitmq_launcher.start(data_dir)
    _started["rabbitmq"] = (
        f"RabbitMQ {node.version} (streams on) AMQP {node.amqp_port}, stream {node.stream_port}, "
        f"ready in {node.startup_seconds:.1f}s; logs under {data_dir}/log"
    )
    try:
        yield node
    finally:
        rabbitmq_launcher.stop(data_dir)


# Session fixtures that start a service (here and in tests/**/conftest.py). A test that uses
# one is an integration test whatever its module says: `make test` runs the process-starting
# tests and the pure ones as two pytest processes at once (scripts/test-suite), split by
# marker, and a pure-group test asking for a broker would start a second one.
SERVICE_FIXTURES = frozenset(
    {"kafka_broker", "kafka_bootstrap", "kafka_cluster", "redis_server", "rabbitmq_node",
     "chaos_kafka", "healthy_kafka", "stack", "dash_stack"}
)  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `integration` every test that uses a service fixture (before `-m` selects)."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if not _started:
        return
    terminalreporter.section("paxline services")
    for line in _started.values():
        terminalreporter.write_line(line)
    if exitstatus != 0 and "kafka" in _started:
        terminalreporter.write_line("tests failed: the broker log above is kept for inspection")
