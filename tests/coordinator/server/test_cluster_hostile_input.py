"""Hostile or broken input against a real cluster: garbage, oversized and forged peer frames
are dropped and counted while the node keeps serving; bad API requests get a 4xx naming the
field and change nothing; mutations without the token get 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from coordinator.client import CoordinatorClient
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def quiet_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Shared by the tests that must not change anything (they assert exactly that)."""
    c = LocalCluster(tmp_path_factory.mktemp("quiet"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


GOOD_SPEC = {
    "name": "clicks",
    "entrypoint": "examples.clicks:job",
    "sources": [{"topic": "clicks", "partitions": 2}],
    "sink": {"kind": "kafka", "topic": "clicks-per-user"},
}


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)


def _frame(secret: bytes, sender: int, body: bytes) -> bytes:
    mac = hmac.new(secret, struct.pack(">I", sender) + body, hashlib.sha256).digest()
    inner = mac + struct.pack(">I", sender) + body
    return struct.pack(">I", len(inner)) + inner


def _dropped(cluster: LocalCluster, node_id: int) -> dict[str, int]:
    with urllib.request.urlopen(cluster.nodes[node_id].url + "/v1/cluster", timeout=2) as r:
        return dict(json.loads(r.read())["frames_dropped"])


def test_bad_peer_frames_are_dropped_counted_and_the_node_keeps_serving(
    cluster: LocalCluster, client: CoordinatorClient
) -> None:
    target = 1
    port = cluster.nodes[target].peer_port
    secret = cluster.secret.encode()
    _send_raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # garbage: absurd length prefix
    _send_raw(port, struct.pack(">I", 512 * 1024 * 1024) + b"\x00" * 100)  # oversized
    _send_raw(port, _frame(b"not-the-cluster-secret", 2, b"P{}"))  # wrong HMAC
    _send_raw(port, _frame(secret, 2, b"P{not json"))  # authenticated but malformed
    _send_raw(port, _frame(secret, 2, b"Z"))  # unknown frame kind

    expected = {"oversized": 2, "bad_mac": 1, "malformed": 2}

    def counted() -> bool:
        dropped = _dropped(cluster, target)
        return all(dropped.get(k, 0) >= v for k, v in expected.items())

    wait_until(counted, 10, f"node {target} to count {expected}")
    with urllib.request.urlopen(cluster.nodes[target].url + "/metrics", timeout=2) as r:
        metrics = r.read().decode()
    assert 'paxline_coordinator_peer_frames_dropped_total{reason="bad_mac"} 1.0' in metrics

    assert cluster.nodes[target].alive()
    client.submit_job(GOOD_SPEC)
    cluster.wait_all_applied()
    assert [j.spec.name for j in client.jobs()] == ["clicks"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("not json", None, "not valid JSON"),
        ("{}", None, "missing required field `name`"),
        ({**GOOD_SPEC, "sources": [{"topic": "clicks", "partitions": "2"}]},
         "$.sources[0].partitions", "Expected `int`"),
        ({**GOOD_SPEC, "sources": [{"topic": "clicks", "partitions": 0}]},
         "$.sources[0].partitions", "partitions"),
        ({**GOOD_SPEC, "entrypoint": "no-colon"}, "$.entrypoint", "entrypoint"),
        ({**GOOD_SPEC, "guarantee": "at-most-once"}, "$.guarantee", "guarantee"),
        ({**GOOD_SPEC, "surprise": 1}, None, "surprise"),
    ],
)  # fmt: skip
def test_bad_job_specs_get_400_naming_the_field_and_change_nothing(
    quiet_cluster: LocalCluster, body: object, field: str | None, message: str
) -> None:
    cluster = quiet_cluster
    content = body if isinstance(body, str) else json.dumps(body)
    before = cluster.status(cluster.wait_for_leader())
    resp = httpx.post(
        cluster.endpoints[1] + "/v1/jobs",  # a follower or the leader: same answer
        content=content,
        headers={"Authorization": f"Bearer {cluster.token}"},
    )
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]
    if field is not None:
        assert resp.json()["field"] == field
    with CoordinatorClient(cluster.endpoints, token=cluster.token) as client:
        assert client.jobs() == []
    after = cluster.status(cluster.wait_for_leader())
    assert before is not None and after is not None
    # Only the read's no-op-free path ran: nothing was proposed for the bad request.
    assert after["commit_index"] == before["commit_index"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/jobs", GOOD_SPEC),
        ("DELETE", "/v1/jobs/clicks", None),
        ("POST", "/v1/jobs/clicks/checkpoints", {"worker_id": "w", "epoch": 1, "offsets": []}),
        ("POST", "/v1/jobs/clicks/offsets:reset", {"offsets": []}),
        ("POST", "/v1/workers/w1/heartbeat", {}),
        ("POST", "/v1/cluster/members", {"id": 4, "peer": "127.0.0.1:9"}),
        ("DELETE", "/v1/cluster/members/3", None),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic abc"])
def test_mutations_without_the_token_get_401(
    quiet_cluster: LocalCluster, method: str, path: str, body: object, auth: str | None
) -> None:
    cluster = quiet_cluster
    headers = {"Authorization": auth} if auth else {}
    for url in cluster.endpoints:
        resp = httpx.request(method, url + path, json=body, headers=headers)
        assert resp.status_code == 401, (url, resp.text)
        assert "token" in resp.json()["error"]


def test_checkpoint_with_bad_offsets_names_the_field(
    cluster: LocalCluster, client: CoordinatorClient
) -> None:
    client.submit_job(GOOD_SPEC)
    epoch = client.heartbeat("w1").assignment[0].epoch
    resp = httpx.post(
        cluster.endpoints[0] + "/v1/jobs/clicks/checkpoints",
        json={"worker_id": "w1", "epoch": epoch,
              "offsets": [{"topic": "clicks", "partition": 0, "offset": -5}]},
        headers={"Authorization": f"Bearer {cluster.token}"},
    )  # fmt: skip
    assert resp.status_code == 400
    assert resp.json()["field"] == "$.offsets[0].offset"
    assert {p.offset for p in client.offsets("clicks")} == {None}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/v1/cluster/members", {"id": 4}, 400, "peer"),
        ("POST", "/v1/cluster/members", {"id": 0, "peer": "h:1"}, 400, "positive"),
        ("POST", "/v1/cluster/members", {"id": 4, "peer": "nohost"}, 400, "HOST:PORT"),
        ("POST", "/v1/cluster/members", {"id": 4, "peer": "h:1", "api": "ftp://x"}, 400, "URL"),
        ("POST", "/v1/cluster/members", {"id": 4, "peer": "h:1", "replace": 4}, 400, "another"),
        ("POST", "/v1/cluster/members", {"id": 4, "peer": "h:1", "x": 1}, 400, "x"),
        ("DELETE", "/v1/cluster/members/abc", None, 400, "positive integer"),
        # Chosen through Paxos, refused by the membership: nothing changes.
        ("POST", "/v1/cluster/members", {"id": 7, "peer": "h:1", "replace": 9}, 409,
         "not a member"),
    ],
)  # fmt: skip
def test_bad_membership_changes_are_refused_and_change_nothing(
    quiet_cluster: LocalCluster, method: str, path: str, body: object, status: int, message: str
) -> None:
    cluster = quiet_cluster
    headers = {"Authorization": f"Bearer {cluster.token}"}
    resp = httpx.request(method, cluster.endpoints[1] + path, json=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"]
    view = cluster.status(cluster.wait_for_leader())
    assert view is not None
    membership = view["membership"]
    assert isinstance(membership, dict)
    assert membership["members"] == [1, 2, 3] and membership["in_effect"] is True
