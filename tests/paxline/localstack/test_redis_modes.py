"""`paxline up --redis single|sentinel|cluster` (docs/architecture.md, sec. 4 "Redis
deployments" and sec. 7): a bad mode is refused naming the flag; the sentinel and cluster
plans are foreground redis-server programs for the supervisor, with ports kept across runs."""

from __future__ import annotations

from pathlib import Path

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
