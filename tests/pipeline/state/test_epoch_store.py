"""The exactly-once Redis store: only the current epoch writes; the last batch can be rolled
back exactly (state, view and applied offset) when its Kafka transaction never committed."""

from __future__ import annotations

import uuid

import pytest
import redis

from paxline.localstack.redis import RedisServer
from pipeline.errors import StateUnavailable
from pipeline.state import StateKey
from pipeline.state.redis import (
    EpochRedisStore,
    ReplicasBehind,
    StaleEpoch,
    StateWiped,
    view_key,
)

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


def test_a_late_script_of_an_earlier_takeover_at_the_same_epoch_is_refused(
    redis_server: RedisServer,
) -> None:
    """A worker takes a partition over again at the same epoch after a transient fault
    (issue 13). A batch it sent before the fault (queued in a paused Redis, or retried after a
    lost reply) must not land after the new takeover reconciled: it would count twice."""
    job = f"eos-{uuid.uuid4().hex[:6]}"
    before = _store(redis_server, job, epoch=4)
    before.take_over()
    before.apply({"a": b"1"}, {}, end_offset=10)
    again = _store(redis_server, job, epoch=4)
    again.take_over()
    with pytest.raises(StaleEpoch):
        before.apply({"a": b"late"}, {}, end_offset=20)
    with pytest.raises(StaleEpoch):
        before.rollback()
    assert again.applied_offset() == 10
    assert again.apply({"a": b"2"}, {}, end_offset=20)
    assert again.get_many(["a"]) == {"a": b"2"}


def test_an_unreachable_redis_is_a_transient_state_unavailable() -> None:
    """Nothing listens on the port: the worker must see `StateUnavailable` (stall and retry),
    never redis' own ConnectionError, which used to end the process."""
    from paxline.localstack.common import free_port
    from pipeline.errors import StateUnavailable
    from pipeline.state import RedisStores

    stores = RedisStores(f"redis://127.0.0.1:{free_port()}/0")
    s = stores.epoch_store(StateKey("gone", "t", 0), 1)
    with pytest.raises(StateUnavailable, match="Redis unreachable"):
        s.take_over()
    with pytest.raises(StateUnavailable):
        s.get_many(["a"])
    stores.close()


def test_a_restore_replaces_the_partition_state_in_chunks_and_sets_applied_last(
    redis_server: RedisServer,
) -> None:
    job = f"rs-{uuid.uuid4().hex[:6]}"
    s = _store(redis_server, job, epoch=3)
    s.take_over()
    s.apply({"stale": b"1"}, {"other-partition": b"9"}, end_offset=5)
    state = {f"k{i}": str(i).encode() for i in range(7)} | {"gone": None}
    s.restore(state, {"k1": b"1", "old": None}, applied=90, chunk=3)
    got_state, got_view = _snapshot(redis_server, job)
    assert got_state == {k.encode(): v for k, v in state.items() if v is not None}
    assert got_view == {b"other-partition": b"9", b"k1": b"1"}  # the view is the job's
    assert s.applied_offset() == 90
    assert s.undo_base() == (False, None)  # nothing from before the restore to roll back


def test_a_restore_by_an_older_epoch_is_refused(redis_server: RedisServer) -> None:
    job = f"rs-{uuid.uuid4().hex[:6]}"
    old = _store(redis_server, job, epoch=3)
    old.take_over()
    _store(redis_server, job, epoch=4).take_over()
    with pytest.raises(StaleEpoch):
        old.restore({"a": b"1"}, {}, applied=10)


def test_reads_and_writes_say_state_was_wiped_once_the_epoch_is_gone(
    redis_server: RedisServer,
) -> None:
    """What FLUSHALL or a restart without data files looks like to a running owner: a
    transient fault (its takeover restores from the changelog), never values read as empty."""
    job = f"rs-{uuid.uuid4().hex[:6]}"
    s = _store(redis_server, job, epoch=2)
    s.take_over()
    s.apply({"a": b"1"}, {}, end_offset=5)
    assert s.get_many(["a"]) == {"a": b"1"}
    redis.Redis.from_url(redis_server.url).delete(f"paxline:{{{job}}}:epoch:t:0")
    with pytest.raises(StateWiped):
        s.get_many(["a"])
    with pytest.raises(StateWiped):
        s.apply({"a": b"2"}, {}, end_offset=6)


def test_a_write_no_replica_acknowledged_is_a_transient_fault(redis_server: RedisServer) -> None:
    """With `wait_replicas` set, a write WAIT cannot confirm raises ReplicasBehind (a
    StateUnavailable: the worker stalls and takes over again) instead of returning applied.
    The session Redis has no replica, so WAIT 1 returns 0 after its timeout."""
    job = f"eos-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_server.url)
    s = EpochRedisStore(client, StateKey(job, "t", 0), 1, "v", wait=(1, 50))
    with pytest.raises(ReplicasBehind, match="0 of 1 replicas"):
        s.take_over()
    with pytest.raises(StateUnavailable):
        s.apply({"a": b"1"}, {}, end_offset=10)
    # Without the requirement the same store writes and reports the batch applied.
    s = EpochRedisStore(client, StateKey(job, "t", 0), 1, "v")
    s.take_over()
    assert s.apply({"a": b"2"}, {}, end_offset=20)
