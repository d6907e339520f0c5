"""A live stack for the dashboard tests: the session's Kafka and Redis, a fresh 3-node
coordinator cluster, two workers, and the `dashcount` job (its own topic, `dash-in`) submitted
and fully assigned. Plus a headless Chromium page with every page error collected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dash_bench import CHROMIUM, CHROMIUM_ARGS, JOB_PATH, WORKERS, BrowserPage, DashStack
from playwright.sync_api import ConsoleMessage, sync_playwright

from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.kafka import KafkaBroker
from paxline.localstack.redis import RedisServer


@pytest.fixture(scope="module")
def dash_stack(
    kafka_broker: KafkaBroker,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DashStack]:
    base = tmp_path_factory.mktemp("dashboard")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    stack = DashStack(kafka_broker.bootstrap, redis_server.url, cluster, logs)
    try:
        for worker_id in WORKERS:
            stack.start_worker(worker_id)
        submitted = stack.paxline("submit", JOB_PATH, "--wait")
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        yield stack
    finally:
        stack.stop_workers()
        cluster.discard()


@pytest.fixture
def browser_page() -> Iterator[BrowserPage]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

            def on_console(msg: ConsoleMessage) -> None:
                # Chromium logs every non-2xx response ("Failed to load resource: ... 503");
                # those are expected during elections. Anything else at error level is a bug.
                if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
                    errors.append(f"console: {msg.text}")

            page.on("console", on_console)
            yield BrowserPage(page, errors)
        finally:
            browser.close()
