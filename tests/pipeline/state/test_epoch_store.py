"""The exactly-once Redis store: only the current epoch writes; the last batch can be rolled
back exactly (state, view and applied offset) when its Kafka transaction never committed."""

from __future__ import annotations

import uuid

import pytest
import redis

from paxline.localstack.redis import RedisServer
from pipeline.state import StateKey
from pipeline.state.redis import EpochRedisStore, StaleEpoch, view_key

pytestmark = pytest.mark.integration


def _store(server: RedisServer, job: str, epoch: int) -> EpochRedisStore:
    return EpochRedisStore(redis.Redis.from_url(server.url), StateKey(job, "t", 0), epoch, "v")


def _snapshot(server: RedisServer, job: str) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    c = redis.Redis.from_url(server.url)
    return c.hgetall(f"paxline:{{{job}}}:state:t:0"), c.hgetall(view_key(job, "v"))


def test_rollback_restores_the_state_before_the_last_batch(redis_server: RedisServer) -> None:
    job = f"eos-{uuid.uuid4().hex[:6]}"
    s = _store(redis_server, job, epoch=5)
    s.take_over()
    assert s.undo_base() == (False, None)
    assert s.apply({"a": b"1", "b": b"2"}, {"x": b"10"}, end_offset=100)
    after_first = _snapshot(redis_server, job)
    assert s.undo_base() == (True, None)

    assert s.apply({"a": b"7", "b": None, "c": b"3"}, {"x": None, "y": b"1"}, end_offset=150)
    assert s.applied_offset() == 150
    assert s.undo_base() == (True, 100)
    s.rollback()
    assert _snapshot(redis_server, job) == after_first
    assert s.applied_offset() == 100
    assert s.undo_base() == (False, None)
    s.rollback()  # nothing left to undo: a no-op
    assert _snapshot(redis_server, job) == after_first


def test_a_first_batch_rolls_back_to_nothing(redis_server: RedisServer) -> None:
    job = f"eos-{uuid.uuid4().hex[:6]}"
    s = _store(redis_server, job, epoch=1)
    s.take_over()
    s.apply({"a": b"1"}, {"x": b"1"}, end_offset=10)
    s.rollback()
    assert _snapshot(redis_server, job) == ({}, {})
    assert s.applied_offset() is None


def test_an_older_epoch_is_refused_after_a_takeover(redis_server: RedisServer) -> None:
    job = f"eos-{uuid.uuid4().hex[:6]}"
    old = _store(redis_server, job, epoch=3)
    old.take_over()
    old.apply({"a": b"1"}, {}, end_offset=10)
    new = _store(redis_server, job, epoch=9)
    new.take_over()
    with pytest.raises(StaleEpoch) as info:
        old.apply({"a": b"zombie"}, {}, end_offset=20)
    assert info.value.current == 9
    with pytest.raises(StaleEpoch):
        old.rollback()
    with pytest.raises(StaleEpoch):
        old.take_over()
    assert new.get_many(["a"]) == {"a": b"1"}
    assert new.applied_offset() == 10


def test_a_replayed_batch_changes_nothing(redis_server: RedisServer) -> None:
    job = f"eos-{uuid.uuid4().hex[:6]}"
    s = _store(redis_server, job, epoch=2)
    s.take_over()
    s.apply({"a": b"1"}, {}, end_offset=10)
    assert s.apply({"a": b"2"}, {}, end_offset=10) is False
    assert s.get_many(["a"]) == {"a": b"1"}
    assert s.undo_base() == (True, None)  # the undo of the real batch is kept
