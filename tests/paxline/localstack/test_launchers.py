"""The launchers behind `scripts/kafka` and `scripts/redis`: idempotent start, clean stop,
restart on the same data directory keeps the data and the address."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from paxline.localstack import kafka
from paxline.localstack import redis as redis_launcher
from paxline.localstack.common import port_open

pytestmark = pytest.mark.integration


def test_kafka_start_is_idempotent_and_a_warm_restart_keeps_its_port(tmp_path: Path) -> None:
    first = kafka.start(tmp_path)
    try:
        again = kafka.start(tmp_path)
        assert (again.pid, again.port) == (first.pid, first.port)
        assert kafka.metadata_brokers("127.0.0.1", first.port) == 1
    finally:
        assert kafka.stop(tmp_path) is True
    assert not port_open(first.port)
    assert kafka.status(tmp_path) is None
    assert kafka.stop(tmp_path) is False

    warm = kafka.start(tmp_path)
    try:
        assert warm.port == first.port
        # The bar for a warm start (jars cached, storage formatted).
        assert warm.startup_seconds < 20, f"warm start took {warm.startup_seconds:.1f}s"
    finally:
        kafka.stop(tmp_path)


def test_redis_runs_with_aof_and_keeps_data_across_a_restart(tmp_path: Path) -> None:
    server = redis_launcher.start(tmp_path)
    try:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.set("survives", "restart")
    finally:
        assert redis_launcher.stop(tmp_path) is True
    restarted = redis_launcher.start(tmp_path)
    try:
        assert restarted.port == server.port
        assert redis.Redis.from_url(restarted.url).get("survives") == b"restart"
    finally:
        redis_launcher.stop(tmp_path)


def test_metadata_probe_says_zero_for_a_port_nobody_serves() -> None:
    from paxline.localstack.common import free_port

    assert kafka.metadata_brokers("127.0.0.1", free_port()) == 0


@pytest.mark.parametrize("service", ["kafka", "redis", "rabbitmq", "hdfs"])
def test_status_of_a_stopped_service_exits_3_and_says_so(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every `scripts/<service> status` answers "not running" the same way (exit 3; 1 is an
    error), so scripts can tell a stopped service from a broken launcher (hdfs said 1)."""
    import importlib

    launcher = importlib.import_module(f"paxline.localstack.{service}")
    assert launcher.main(["status", "--data-dir", str(tmp_path / service)]) == 3
    assert f"{service} is not running" in capsys.readouterr().out
