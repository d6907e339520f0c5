"""Both state stores obey the same contract: a batch applies atomically once; a replayed
batch (end offset not beyond what is applied) changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from paxline.localstack.redis import RedisServer
from pipeline.state import MemoryStore, PartitionStore, RedisStore, StateKey
from pipeline.state.redis import view_key


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store_and_view(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[PartitionStore, dict[str, bytes]]]:
    if request.param == "memory":
        views: dict[str, dict[str, bytes]] = {}
        mem = MemoryStore(views, "counts")
        yield mem, views.setdefault("counts", {})
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    job = f"job-{uuid.uuid4().hex[:6]}"
    store = RedisStore(client, StateKey(job, "text", 3), view="counts")

    class LiveView(dict[str, bytes]):
        """Reads the Redis view hash on access so assertions see the server's truth."""

        def items(self):  # type: ignore[override]
            raw = client.hgetall(view_key(job, "counts"))
            return {k.decode(): v for k, v in raw.items()}.items()

    yield store, LiveView()


def _view(v: dict[str, bytes]) -> dict[str, bytes]:
    return dict(v.items())


def test_batches_apply_once_and_replays_are_refused(
    store_and_view: tuple[PartitionStore, dict[str, bytes]],
) -> None:
    store, view = store_and_view
    assert store.applied_offset() is None
    assert store.get_many(["a", "b"]) == {"a": None, "b": None}

    assert store.apply({"a": b"1", "b": b"2"}, {"apple": b"1"}, end_offset=10) is True
    assert store.applied_offset() == 10
    assert store.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2", "c": None}
    assert _view(view) == {"apple": b"1"}

    # The same batch again (a replay after a crash before the checkpoint): no effect.
    assert store.apply({"a": b"999"}, {"apple": b"999"}, end_offset=10) is False
    assert store.apply({"a": b"999"}, {}, end_offset=7) is False
    assert store.get_many(["a"]) == {"a": b"1"}
    assert _view(view) == {"apple": b"1"}

    # Deletes in state and view, and an empty batch that only advances the offset.
    assert store.apply({"a": None}, {"apple": None, "pear": b"4"}, end_offset=12) is True
    assert store.get_many(["a", "b"]) == {"a": None, "b": b"2"}
    assert _view(view) == {"pear": b"4"}
    assert store.apply({}, {}, end_offset=13) is True
    assert store.applied_offset() == 13
