"""What a worker logs for normal events is not an error (issue 14, item 6): a handover that
a newer assignment overtook is INFO, a heartbeat cut short by shutdown is silent, and the
HTTP client does not log every heartbeat."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from coordinator.protocol import AssignedPartition, HeartbeatReply
from paxline.cli.jobs import configure_worker_logging
from paxline.localstack.common import wait_until
from pipeline.state.redis import StaleEpoch
from pipeline.worker import Worker, WorkerConfig


@pytest.fixture
def w() -> Iterator[Worker]:
    # Nothing listens on these addresses; the clients connect lazily and nothing is sent.
    worker = Worker(
        WorkerConfig(
            "w-logs", ["http://127.0.0.1:9"], "t", "127.0.0.1:9", "redis://127.0.0.1:9/0",
            heartbeat_interval=0.01,
        )
    )  # fmt: skip
    yield worker
    worker._txn_pool.shutdown(wait=True)
    del worker
    gc.collect()


def test_a_handover_overtaken_by_a_newer_epoch_is_not_an_error(
    w: Worker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(w, "_job", lambda name: None)

    def prepare(a: AssignedPartition) -> Any:
        raise StaleEpoch(a.epoch + 1)

    monkeypatch.setattr(w, "_prepare", prepare)
    with caplog.at_level(logging.INFO, logger="pipeline.worker"):
        w._reconcile([AssignedPartition("j", "t", 0, 4, None)])
        w._take_due()  # the takeover runs on the worker's takeover pool ...
        futures = [fut for _, fut in w._taking.values()]
        assert futures, "no takeover was started"
        wait_until(lambda: all(f.done() for f in futures), 10, "the takeover to finish")
        w._install_ready()  # ... and its outcome is handled on the main thread
    assert not w.owned
    assert [r.levelname for r in caplog.records] == ["INFO"], caplog.text
    assert "fenced on t[0] of j" in caplog.text and "epoch now 5" in caplog.text


def test_a_heartbeat_cut_short_by_shutdown_logs_nothing(
    w: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    in_beat = threading.Event()
    release = threading.Event()

    def heartbeat(*_: Any) -> HeartbeatReply:
        in_beat.set()
        release.wait(10)
        raise RuntimeError("Cannot send a request, as the client has been closed.")

    w._hb_client.heartbeat = heartbeat  # type: ignore[method-assign]
    t = threading.Thread(target=w._heartbeat_loop, daemon=True)
    with caplog.at_level(logging.INFO, logger="pipeline.worker"):
        t.start()
        assert in_beat.wait(10)
        w.stop_event.set()  # shutdown begins while the beat is on the wire ...
        release.set()  # ... and closing the client fails it
        t.join(10)
    assert not t.is_alive()
    assert caplog.records == [], caplog.text


def test_worker_logging_keeps_the_http_client_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    httpx_log = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_log, "level", logging.NOTSET)  # restored afterwards
    configure_worker_logging("w-logs")
    assert not httpx_log.isEnabledFor(logging.INFO)  # one line per heartbeat otherwise
