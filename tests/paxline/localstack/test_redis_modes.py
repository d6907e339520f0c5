"""`paxline up --redis single|sentinel|cluster` (docs/architecture.md, sec. 4 "Redis
deployments" and sec. 7): a bad mode is refused naming the flag; the sentinel and cluster
plans are foreground redis-server programs for the supervisor, with ports kept across runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from paxline.localstack import redis as redis_launcher
from paxline.localstack import redis_cluster, redis_sentinel
from paxline.localstack.stack import StackOptions
from pipeline.state.url import parse_redis_url


def test_an_unknown_redis_mode_is_refused_naming_the_flag() -> None:
    assert StackOptions(redis="cluster").problems() == []
    assert StackOptions(redis="raft").problems() == [
        "--redis must be one of single, sentinel, cluster, got 'raft'"
    ]


def test_the_sentinel_plan_is_two_nodes_and_three_sentinels_with_waiting_url(
    tmp_path: Path,
) -> None:
    url, programs = redis_sentinel.prepare(tmp_path)
    names = [p[0] for p in programs]
    assert names == ["redis-0", "redis-1", "sentinel-1", "sentinel-2", "sentinel-3"]
    assert "--replicaof" in programs[1][1] and "--replicaof" not in programs[0][1]
    assert all("--daemonize" in argv and "no" in argv for _, argv, _, _ in programs)
    t = parse_redis_url(url)
    assert t.is_sentinel and len(t.sentinels) == 3 and t.wait_replicas == 1
    again, programs2 = redis_sentinel.prepare(tmp_path)  # a restart keeps the ports
    assert again == url and [p[3] for p in programs2] == [p[3] for p in programs]
    assert "--replicaof" not in programs2[1][1]  # the sentinels set the roles from now on


def test_the_cluster_plan_is_six_cluster_nodes_on_bus_safe_ports(tmp_path: Path) -> None:
    url, programs = redis_cluster.prepare(tmp_path)
    assert len(programs) == 6
    assert all("--cluster-enabled" in argv for _, argv, _, _ in programs)
    assert all(port <= 55535 for *_, port in programs)  # the bus listens on port + 10000
    assert parse_redis_url(url).cluster == tuple(("127.0.0.1", p[3]) for p in programs)
    assert redis_cluster.prepare(tmp_path)[0] == url


def test_a_redis_whose_port_was_taken_says_so_at_once(
    redis_server: redis_launcher.RedisServer, tmp_path: Path
) -> None:
    """Another Redis answering PING on the port is not this one: it fails fast, naming the
    port (the cluster launcher then picks another). It used to pass the PING wait and time
    out 30 s later on the pid file (CI, tests/pipeline/state/test_cluster_store.py)."""
    t0 = time.monotonic()
    with pytest.raises(redis_launcher.PortTaken, match=str(redis_server.port)):
        redis_launcher.start(tmp_path / "second", port=redis_server.port, timeout=20)
    assert time.monotonic() - t0 < 10
