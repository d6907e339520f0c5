"""The state-store URL (pipeline/state/url.py): one Redis or a Sentinel-watched primary, and
how many replicas must acknowledge a write; a malformed URL is named, never half-parsed."""

from __future__ import annotations

import pytest

from pipeline.state.url import RedisUrlError, parse_redis_url


def test_a_plain_url_passes_through_without_our_parameters() -> None:
    t = parse_redis_url("redis://:pw@h:6380/2?wait_replicas=1&wait_timeout_ms=500&health=1")
    assert t.url == "redis://:pw@h:6380/2?health=1"
    assert not t.is_sentinel
    assert (t.wait_replicas, t.wait_timeout_ms) == (1, 500)


def test_a_plain_url_waits_for_no_replica_by_default() -> None:
    t = parse_redis_url("redis://127.0.0.1:6379/0")
    assert (t.url, t.wait_replicas) == ("redis://127.0.0.1:6379/0", 0)


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    t = parse_redis_url("redis+sentinel://:secret@a:26379,b:26380/mymaster/3?wait_replicas=2")
    assert t.is_sentinel
    assert t.sentinels == (("a", 26379), ("b", 26380))
    assert (t.master, t.db, t.password) == ("mymaster", 3, "secret")
    assert (t.wait_replicas, t.wait_timeout_ms) == (2, 1000)


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("http://h:1/0", "must start with"),
        ("redis+sentinel://a:1,b/m", "'b'"),
        ("redis+sentinel://a:1", "master"),
        ("redis+sentinel://a:1/m/x", "'x'"),
        ("redis+sentinel://a:1/m?foo=1", "'foo'"),
        ("redis://h/0?wait_replicas=one", "wait_replicas='one'"),
        ("redis://h/0?wait_replicas=-1", "must not be negative"),
        ("redis://h/0?wait_replicas=1&wait_timeout_ms=9000", "wait_timeout_ms=9000"),
        ("redis://h/0?wait_replicas=1&wait_timeout_ms=0", "wait_timeout_ms=0"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_part(url: str, names: str) -> None:
    with pytest.raises(RedisUrlError, match=names.replace("?", r"\?")) as info:
        parse_redis_url(url)
    assert url in str(info.value) or names in str(info.value)


def test_a_cluster_url_names_its_nodes_and_refuses_replica_waits() -> None:
    t = parse_redis_url("redis+cluster://a:7000,b:7001")
    assert t.is_cluster and not t.is_sentinel
    assert t.cluster == (("a", 7000), ("b", 7001))
    with pytest.raises(RedisUrlError, match="not supported with Redis Cluster"):
        parse_redis_url("redis+cluster://a:7000?wait_replicas=1")
    with pytest.raises(RedisUrlError, match="redis\\+cluster://host:port"):
        parse_redis_url("redis+cluster://a:7000/0")


@pytest.mark.parametrize(
    "url",
    [
        "http://:s3cret@h:1/0",
        "redis://:s3cret@h/0?wait_replicas=one",
        "redis+sentinel://:s3cret@a:1",
        "redis+cluster://user:s3cret@a:7000?wait_replicas=1",
    ],
)
def test_a_refused_url_is_shown_without_its_password(url: str) -> None:
    """The message ends up in a worker's one CRITICAL line and in the CLI's: the password
    is masked, the rest of the URL stays so the reader sees which one is meant."""
    with pytest.raises(RedisUrlError) as info:
        parse_redis_url(url)
    assert "s3cret" not in str(info.value)
    assert ":***@" in str(info.value)
