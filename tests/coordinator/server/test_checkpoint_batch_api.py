"""`POST /v1/workers/{id}/checkpoints` against a real 3-node cluster (issue 17): a worker's
(job, epoch) groups in one request, each answered on its own; a malformed batch is refused
with a 400 naming the field and nothing of it is applied; a retry of the same session seq is
answered with the first result and applies nothing again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from coordinator.client import CoordinatorClient
from coordinator.commands import (
    CheckpointBatchApplied,
    CheckpointCommitted,
    CheckpointGroup,
    Fenced,
)
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration


def _job(name: str, topic: str) -> dict[str, Any]:
    return {
        "name": name,
        "entrypoint": "examples.clicks:job",
        "sources": [{"topic": topic, "partitions": 2}],
        "sink": {"kind": "kafka", "topic": "out"},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Jobs "wc" (clicks:2) and "ads" (ads:2), all four partitions owned by worker w1.
    Sessions last long enough that no expiry changes anything during the module."""
    c = LocalCluster(
        tmp_path_factory.mktemp("batch"), env={"PAXLINE_WORKER_SESSION_TIMEOUT": "600"}
    )
    c.start()
    try:
        with CoordinatorClient(c.endpoints, token=c.token, timeout=20) as client:
            client.submit_job(_job("wc", "clicks"))
            client.submit_job(_job("ads", "ads"))
            assert len(client.heartbeat("w1").assignment) == 4
        yield c
    finally:
        c.stop()


def _epochs(client: CoordinatorClient) -> dict[str, int]:
    return {a.job: a.epoch for a in client.heartbeat("w1").assignment}


@pytest.fixture(scope="module")
def epochs(cluster: LocalCluster) -> dict[str, int]:
    """w1's epochs; they never change in this module (w1 is the only worker, sessions last)."""
    with CoordinatorClient(cluster.endpoints, token=cluster.token, timeout=20) as client:
        return _epochs(client)


def _offsets(client: CoordinatorClient) -> dict[tuple[str, str, int], int | None]:
    return {(j, p.topic, p.partition): p.offset for j in ("wc", "ads") for p in client.offsets(j)}


def test_each_group_is_committed_or_fenced_on_its_own(client: CoordinatorClient) -> None:
    epochs = _epochs(client)
    before = _offsets(client)
    applied = client.commit_checkpoint_batch(
        "w1",
        [
            CheckpointGroup("wc", epochs["wc"], {("clicks", 0): 10, ("clicks", 1): 11}),
            CheckpointGroup("ads", epochs["ads"] + 1000, {("ads", 0): 5}),  # not its epoch
        ],
    )
    assert applied == CheckpointBatchApplied(
        "w1",
        (
            CheckpointCommitted("wc", "w1", epochs["wc"]),
            Fenced("ads", "ads", 0, "w1", epochs["ads"] + 1000, "w1", epochs["ads"]),
        ),
    )
    after = _offsets(client)
    assert after[("wc", "clicks", 0)] == 10 and after[("wc", "clicks", 1)] == 11
    assert after[("ads", "ads", 0)] == before[("ads", "ads", 0)]


def _post(cluster: LocalCluster, body: object, **headers: str) -> httpx.Response:
    content = body if isinstance(body, str) else None
    return httpx.post(
        cluster.endpoints[1] + "/v1/workers/w1/checkpoints",  # a follower or the leader
        content=content,
        json=None if content is not None else body,
        headers={"Authorization": f"Bearer {cluster.token}", **headers},
        timeout=20,
    )


def _good(job: str, epoch: int | str, topic: str, partition: int, offset: int) -> dict[str, Any]:
    return {
        "job": job,
        "epoch": epoch,
        "offsets": [{"topic": topic, "partition": partition, "offset": offset}],
    }


# (id, groups after a good first group (job, epoch filled in by the test), field, message)
MALFORMED: list[tuple[str, object, str | None, str]] = [
    ("no groups", {"groups": []}, "$.groups", "must not be empty"),
    ("no groups field", {}, None, "groups"),
    ("not JSON", "{nope", None, "not valid JSON"),
    ("negative offset", {"groups": ["GOOD", _good("ads", "EPOCH", "ads", 0, -1)]},
     "$.groups[1].offsets[0].offset", "offset must be >= 0"),
    ("negative partition", {"groups": ["GOOD", _good("ads", "EPOCH", "ads", -1, 1)]},
     "$.groups[1].offsets[0].partition", "partition must be >= 0"),
    ("epoch 0", {"groups": ["GOOD", _good("ads", 0, "ads", 0, 1)]},
     "$.groups[1].epoch", "epoch must be >= 1"),
    ("epoch not a number", {"groups": ["GOOD", _good("ads", "x", "ads", 0, 1)]},
     "$.groups[1].epoch", "Expected `int`"),
    ("empty offsets", {"groups": ["GOOD", {"job": "ads", "epoch": "EPOCH", "offsets": []}]},
     "$.groups[1].offsets", "must not be empty"),
    ("a partition in two groups", {"groups": ["GOOD", _good("wc", "EPOCH", "clicks", 0, 9)]},
     "$.groups[1].offsets", "earlier group"),
    ("unknown field", {"groups": ["GOOD", {**_good("ads", "EPOCH", "ads", 0, 1), "x": 1}]},
     "$.groups[1]", "unknown field `x`"),
]  # fmt: skip


def _fill(body: object, epochs: dict[str, int]) -> object:
    if not isinstance(body, dict) or "groups" not in body:
        return body
    groups = []
    for grp in body["groups"]:
        if grp == "GOOD":
            grp = _good("wc", epochs["wc"], "clicks", 0, 1_000)
        elif grp["epoch"] == "EPOCH":
            grp = {**grp, "epoch": epochs[grp["job"]]}
        groups.append(grp)
    return {"groups": groups}


@pytest.mark.parametrize(
    ("body", "field", "message"), [pytest.param(*m[1:], id=m[0]) for m in MALFORMED]
)
def test_a_malformed_batch_gets_400_naming_the_field_and_nothing_is_applied(
    cluster: LocalCluster,
    client: CoordinatorClient,
    epochs: dict[str, int],
    body: object,
    field: str | None,
    message: str,
) -> None:
    before = _offsets(client)
    index = cluster.status(cluster.wait_for_leader())
    resp = _post(cluster, _fill(body, epochs))
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]
    if field is not None:
        assert resp.json()["field"] == field
    # The good first group was not applied either, and nothing was proposed.
    assert _offsets(client) == before
    after = cluster.status(cluster.wait_for_leader())
    assert index is not None and after is not None
    assert after["commit_index"] == index["commit_index"]


def test_a_retry_of_the_same_seq_gets_the_first_answer_and_applies_nothing_again(
    cluster: LocalCluster, client: CoordinatorClient
) -> None:
    epochs = _epochs(client)
    body = {"groups": [_good("ads", epochs["ads"], "ads", 1, 50)]}
    session = {"Paxline-Client-Id": "retrying-worker", "Paxline-Seq": "1"}
    first = _post(cluster, body, **session)
    assert first.status_code == 200, first.text
    assert [r["result"] for r in first.json()["results"]] == ["CheckpointCommitted"]
    # The offset moves on under another session; the late retry must not move it back.
    client.commit_checkpoint_batch("w1", [CheckpointGroup("ads", epochs["ads"], {("ads", 1): 70})])
    retry = _post(cluster, body, **session)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert _offsets(client)[("ads", "ads", 1)] == 70


def test_the_route_needs_the_token(cluster: LocalCluster) -> None:
    for url in cluster.endpoints:
        resp = httpx.post(url + "/v1/workers/w1/checkpoints", json={"groups": []})
        assert resp.status_code == 401, resp.text


def test_a_follower_names_the_leader_and_the_client_goes_there_directly(
    cluster: LocalCluster,
) -> None:
    """Forwarded answers carry `Paxline-Leader`; `CoordinatorClient` then calls the leader
    itself, so a client that first reached a follower does not cost two HTTP exchanges per
    call for the rest of its life (issue 17, the scale run's profile)."""
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    leader_url, follower_url = cluster.nodes[leader].url, cluster.nodes[follower].url
    resp = httpx.get(follower_url + "/v1/jobs", timeout=20)
    assert resp.status_code == 200
    assert resp.headers["paxline-leader"] == leader_url
    assert "paxline-leader" not in httpx.get(leader_url + "/v1/jobs", timeout=20).headers
    with CoordinatorClient([follower_url, leader_url], token=cluster.token, timeout=20) as c:
        assert c.preferred_endpoint == follower_url
        c.jobs()
        assert c.preferred_endpoint == leader_url


def test_a_forwarding_follower_does_not_log_each_request(cluster: LocalCluster) -> None:
    """httpx logs every request at INFO; a follower forwards every request it gets, so at
    1,000 workers its log gained ~1,000 such lines a second and the elections were buried in
    them (the issue 17 scale run)."""
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    marker = "/v1/jobs/forwarded-log-probe"
    resp = httpx.get(cluster.nodes[follower].url + marker, timeout=20)
    assert resp.headers["paxline-leader"] == cluster.nodes[leader].url  # it was forwarded
    assert marker not in cluster.nodes[follower].log_path.read_text()
