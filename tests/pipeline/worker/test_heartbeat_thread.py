"""The worker's heartbeat thread outlives any failure of one beat (a heartbeat thread that
died once left a worker running without a session: its partitions moved away and it never got
new ones), and a worker whose heartbeat thread is gone anyway stops with an error."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from coordinator.client import CoordinatorClient
from coordinator.protocol import HeartbeatReply, Progress
from paxline.localstack.common import wait_until
from pipeline.errors import PipelineError
from pipeline.worker import Worker, WorkerClients, WorkerConfig


class Beats(CoordinatorClient):
    """The heartbeat client, injected: the first beat gets a reply that is not JSON."""

    def __init__(self) -> None:
        super().__init__(["http://127.0.0.1:9"], "token-123")
        self.beats: list[str] = []

    def heartbeat(
        self, worker_id: str, capacity: int = 1024, progress: list[Progress] | None = None
    ) -> HeartbeatReply:
        self.beats.append("beat")
        if len(self.beats) == 1:
            raise ValueError("a reply that is not JSON")
        return HeartbeatReply(worker_id, 10.0, [])


@pytest.fixture
def w() -> Iterator[Worker]:
    # Nothing listens on these addresses; the clients connect lazily, and the beats are faked.
    cfg = WorkerConfig(
        "w-hb", ["http://127.0.0.1:9"], "token-123", "127.0.0.1:9", "redis://127.0.0.1:9/0",
        heartbeat_interval=0.01,
    )  # fmt: skip
    clients = WorkerClients.from_config(cfg)
    clients.heartbeat = Beats()
    worker = Worker(cfg, clients)
    yield worker
    # Destroy its Kafka producer now, not at interpreter exit, where its "connection refused"
    # lines would land in the test run's output after the summary.
    del worker
    gc.collect()


def test_an_unexpected_error_in_one_beat_does_not_stop_the_heartbeats(w: Worker) -> None:
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


class ClosingBeats(Beats):
    """A beat in flight when the worker closes the client fails the way httpx does then."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = threading.Event()

    def heartbeat(
        self, worker_id: str, capacity: int = 1024, progress: list[Progress] | None = None
    ) -> HeartbeatReply:
        self.beats.append("beat")
        self.closed.wait(10)
        raise RuntimeError("Cannot send a request, as the client has been closed.")

    def close(self) -> None:
        self.closed.set()
        super().close()


class Gone(CoordinatorClient):
    """Coordinators that refuse at once (the default client retries for its deadline)."""

    def __init__(self) -> None:
        super().__init__(["http://127.0.0.1:9"], "token-123")

    def deregister(self, worker_id: str) -> None:
        from coordinator.client import CoordinatorUnavailable

        raise CoordinatorUnavailable("no coordinator answered")


def test_a_worker_that_stops_on_a_bug_says_so_once_not_with_a_heartbeat_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by make chaos: after "CRITICAL ... stopped: bug: ..." every worker log ended in a
    "heartbeat failed unexpectedly" traceback ("the client has been closed"), because the
    shutdown closed the heartbeat client under a beat without telling the thread."""
    cfg = WorkerConfig(
        "w-bug", ["http://127.0.0.1:9"], "token-123", "127.0.0.1:9", "redis://127.0.0.1:9/0",
        heartbeat_interval=0.01,
    )  # fmt: skip
    clients = WorkerClients.from_config(cfg)
    beats = ClosingBeats()
    clients.heartbeat, clients.coordinators = beats, Gone()
    w = Worker(cfg, clients)

    def planted() -> int:
        wait_until(lambda: bool(beats.beats), 10, "a beat in flight")
        raise PipelineError("bug: planted")

    monkeypatch.setattr(w, "run_once", planted)
    with pytest.raises(PipelineError, match="bug: planted"):
        w.run()
    noise = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert noise == []
    del w
    gc.collect()
