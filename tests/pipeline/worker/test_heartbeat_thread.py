"""The worker's heartbeat thread outlives any failure of one beat (a heartbeat thread that
died once left a worker running without a session: its partitions moved away and it never got
new ones), and a worker whose heartbeat thread is gone anyway stops with an error."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.protocol import HeartbeatReply
from paxline.localstack.common import wait_until
from pipeline.errors import PipelineError
from pipeline.worker import Worker, WorkerConfig


@pytest.fixture
def w() -> Iterator[Worker]:
    # Nothing listens on these addresses; the clients connect lazily, and the beats are faked.
    worker = Worker(
        WorkerConfig(
            "w-hb", ["http://127.0.0.1:9"], "token-123", "127.0.0.1:9", "redis://127.0.0.1:9/0",
            heartbeat_interval=0.01,
        )
    )  # fmt: skip
    yield worker
    # Destroy its Kafka producer now, not at interpreter exit, where its "connection refused"
    # lines would land in the test run's output after the summary.
    del worker
    gc.collect()


def test_an_unexpected_error_in_one_beat_does_not_stop_the_heartbeats(w: Worker) -> None:
    beats: list[str] = []

    def heartbeat(*_: Any) -> HeartbeatReply:
        beats.append("beat")
        if len(beats) == 1:
            raise ValueError("a reply that is not JSON")
        return HeartbeatReply("w-hb", 10.0, [])

    w._hb_client.heartbeat = heartbeat  # type: ignore[method-assign]
    t = threading.Thread(target=w._heartbeat_loop, daemon=True)
    t.start()
    try:
        wait_until(lambda: w._hb.version >= 2, 10, "two good beats after a failed one")
        assert t.is_alive()
        assert w._hb.assignment == []
    finally:
        w.stop_event.set()
        t.join(5)


def test_a_worker_whose_heartbeat_thread_ended_stops_with_an_error(
    w: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(w, "_heartbeat_loop", lambda: None)  # ends at once
    monkeypatch.setattr(w, "run_once", lambda: 0)
    monkeypatch.setattr(w, "shutdown", lambda: None)
    guard = threading.Timer(10, w.stop_event.set)  # without the check, run() would never end
    guard.start()
    try:
        with pytest.raises(PipelineError, match="heartbeat thread stopped"):
            w.run()
    finally:
        guard.cancel()
