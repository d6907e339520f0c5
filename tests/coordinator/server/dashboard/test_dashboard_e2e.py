"""The dashboard in a real browser against a live stack: the leader and the nodes appear, a
job's partition offsets appear and move as records are produced, the charts fill in, a 503
burst shows "reconnecting" without losing the page, and a leader kill is followed live.

Every wait is a condition with a deadline (Playwright's `expect` / `wait_for_function`)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from confluent_kafka import Producer
from dash_bench import ROOT, BrowserPage, DashStack
from playwright.sync_api import Locator, Page, Route, expect

from pipeline.kafka import end_offsets

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

JOB = "dashcount"
TOPIC = "dash-in"
REPARTITION = f"paxline.{JOB}.repartition.1"
ARTIFACT = ROOT / "test-artifacts" / "dashboard.png"


def produce(bootstrap: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    for partition, n in per_partition.items():
        for i in range(n):
            producer.produce(TOPIC, words[i % len(words)].encode(), partition=partition)
    assert producer.flush(30) == 0


def offset_cell(page: Page, topic: str, partition: int) -> Locator:
    return page.get_by_test_id(f"offset-{JOB}-{topic}-{partition}")


def expect_connection(page: Page, state: str, timeout: float = 15_000) -> None:
    """The status pill says `state` ("live" or "reconnecting")."""
    expect(page.get_by_test_id("connection")).to_have_attribute(
        "data-state", state, timeout=timeout
    )


def wait_topic_total(page: Page, topic: str, total: int, timeout: float = 60_000) -> None:
    """The agreed offsets shown for every partition of `topic` add up to `total`."""
    page.wait_for_function(
        """([prefix, total]) => {
            const cells = document.querySelectorAll(`[data-testid^="${prefix}"]`);
            let sum = 0;
            for (const c of cells) sum += Number(c.dataset.value || 0);
            return cells.length > 0 && sum === total;
        }""",
        arg=[f"offset-{JOB}-{topic}-", total],
        timeout=timeout,
    )


def test_dashboard_shows_cluster_and_live_offsets(
    dash_stack: DashStack, browser_page: BrowserPage, tmp_path: Path
) -> None:
    page = browser_page.page
    leader = dash_stack.leader()
    page.goto(dash_stack.follower_url() + "/")

    # The cluster: live, the leader named and highlighted, every node up.
    expect_connection(page, "live", 15_000)
    expect(page.get_by_test_id("leader")).to_have_text(str(leader), timeout=15_000)
    expect(page.get_by_test_id(f"node-role-{leader}")).to_have_text("leader")
    expect(page.get_by_test_id(f"node-{leader}")).to_have_class(re.compile(r"\bis-leader\b"))
    expect(page.get_by_test_id("nodes-up")).to_have_text("3 / 3")
    expect(page.get_by_test_id("worker-count")).to_have_text("2", timeout=15_000)

    # The job: guarantee, its source topic, every partition owned.
    card = page.get_by_test_id(f"job-{JOB}")
    expect(card).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id(f"job-guarantee-{JOB}")).to_have_text("at-least-once")
    expect(page.get_by_test_id(f"job-sources-{JOB}")).to_contain_text(TOPIC)
    expect(page.get_by_test_id(f"job-owned-{JOB}")).to_have_text("4 / 4", timeout=15_000)
    for p in (0, 1):
        expect(page.get_by_test_id(f"owner-{JOB}-{TOPIC}-{p}")).to_have_text(
            re.compile(r"^dash-w[12]$")
        )

    # Records in: the agreed offsets shown reach Kafka's end offsets, on the input topic and
    # (every record is re-keyed) in total on the repartition topic; lag drains to 0.
    base = end_offsets(dash_stack.kafka, [(TOPIC, 0), (TOPIC, 1)])
    produce(dash_stack.kafka, {0: 120, 1: 80})
    want = {0: base[(TOPIC, 0)] + 120, 1: base[(TOPIC, 1)] + 80}
    for p, offset in want.items():
        expect(offset_cell(page, TOPIC, p)).to_have_text(str(offset), timeout=60_000)
    wait_topic_total(page, REPARTITION, sum(want.values()))
    for p, offset in want.items():
        expect(page.get_by_test_id(f"end-{JOB}-{TOPIC}-{p}")).to_have_text(
            str(offset), timeout=30_000
        )
        expect(page.get_by_test_id(f"lag-{JOB}-{TOPIC}-{p}")).to_have_text("0", timeout=30_000)

    # More records: the same cells move on without a reload.
    produce(dash_stack.kafka, {0: 35, 1: 65})
    want = {0: want[0] + 35, 1: want[1] + 65}
    for p, offset in want.items():
        expect(offset_cell(page, TOPIC, p)).to_have_text(str(offset), timeout=60_000)
    wait_topic_total(page, REPARTITION, sum(want.values()))
    expect(page.get_by_test_id(f"job-total-offset-{JOB}")).to_have_attribute(
        "data-value", str(2 * sum(want.values())), timeout=30_000
    )

    # The charts have drawn a history (a sample a second).
    for chart in (f"chart-offset-{JOB}", f"chart-lag-{JOB}"):
        page.wait_for_function(
            "id => Number(document.querySelector(`[data-testid='${id}']`).dataset.samples) >= 5",
            arg=chart,
            timeout=30_000,
        )
    expect_connection(page, "live")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)

    # A burst of 503s (as during an election): "reconnecting", the last data stays on screen,
    # and the page recovers by itself once the API answers again.
    def unavailable(route: Route) -> None:
        route.fulfill(status=503, content_type="application/json",
                      body='{"error": "no leader is known yet; retry shortly"}')  # fmt: skip

    page.route(re.compile(r"/v1/jobs"), unavailable)
    expect_connection(page, "reconnecting", 10_000)
    expect(page.get_by_test_id("connection")).to_contain_text("no leader is known yet")
    expect(offset_cell(page, TOPIC, 0)).to_have_text(str(want[0]))
    page.unroute(re.compile(r"/v1/jobs"))
    expect_connection(page, "live", 10_000)

    assert browser_page.errors == []


def test_dashboard_follows_a_leader_kill(dash_stack: DashStack, browser_page: BrowserPage) -> None:
    page = browser_page.page
    old = dash_stack.leader()
    page.goto(dash_stack.follower_url() + "/")
    expect(page.get_by_test_id("leader")).to_have_text(str(old), timeout=15_000)

    dash_stack.cluster.kill(old)
    try:
        # The page, served by a surviving node, shows the old leader down and a new one.
        expect(page.get_by_test_id(f"node-role-{old}")).to_have_text("unreachable", timeout=30_000)
        expect(page.get_by_test_id("leader")).to_have_text(
            re.compile(rf"^(?!{old}$)\d+$"), timeout=30_000
        )
        expect(page.get_by_test_id("nodes-up")).to_have_text("2 / 3")
        expect_connection(page, "live", 30_000)
        expect(page.get_by_test_id(f"job-{JOB}")).to_be_visible()
    finally:
        dash_stack.cluster.start_node(old)

    # The old node comes back (as a follower, or re-elected: either is fine); the page shows
    # every node up and exactly one leader, the one the nodes agree on.
    expect(page.get_by_test_id("nodes-up")).to_have_text("3 / 3", timeout=30_000)
    try:
        roles = page.locator('[data-testid^="node-role-"]')
        expect(roles.filter(has_text="leader")).to_have_count(1, timeout=30_000)
        expect(page.get_by_test_id(f"node-role-{old}")).to_have_text(
            re.compile(r"^(leader|follower)$"), timeout=30_000
        )
        expect(page.get_by_test_id("leader")).to_have_text(str(dash_stack.leader()), timeout=15_000)
    except AssertionError as exc:
        views = {i: dash_stack.cluster.status(i) for i in dash_stack.cluster.nodes}
        raise AssertionError(f"{exc}\nnodes' own views: {json.dumps(views, indent=1)}") from exc
    assert browser_page.errors == []
