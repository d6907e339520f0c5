"""A real 3-node cluster over TLS (HTTPS API, mutual-TLS peer links), with a CA the test makes.

It elects, commits and serves linearizable reads to the typed client given the CA, also
through a follower (which forwards to the leader over HTTPS, verified). A client without the
CA, or with another CA, is refused at once with "certificate verify failed", in the library
and in the CLI. A node that holds the cluster secret and trusts the CA but presents a
certificate from another CA cannot take part: the others refuse and count its handshakes,
it learns nothing, and the same node with a good certificate catches up. Bad TLS settings
stop a node with one line and exit 2. Plain mode (HMAC only) is every other cluster test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from coordinator.client import CoordinatorClient, CoordinatorTLSError, CoordinatorUnavailable
from coordinator.commands import JobSubmitted
from coordinator.server.main import ConfigError, config_from_env
from coordinator.server.tls import TlsConfig
from paxline.localstack.common import wait_until
from paxline.localstack.coordinators import LocalCluster
from tests.coordinator.server.certs import NodeCert, TestCA

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _spec(name: str) -> dict[str, object]:
    return {
        "name": name,
        "entrypoint": "examples.clicks:job",
        "sources": [{"topic": f"{name}-in", "partitions": 2}],
        "sink": {"kind": "kafka", "topic": f"{name}-out"},
    }


def _tls(c: NodeCert) -> TlsConfig:
    return TlsConfig(c.cert, c.key, c.ca)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, TestCA]:
    base = tmp_path_factory.mktemp("pki")
    return TestCA(base / "ca"), TestCA(base / "other", name="another CA")


@pytest.fixture(scope="module")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, pki: tuple[TestCA, TestCA]
) -> Iterator[LocalCluster]:
    ca, _ = pki
    tls = {i: _tls(ca.issue(f"node{i}")) for i in (1, 2, 3)}
    c = LocalCluster(tmp_path_factory.mktemp("tls-cluster"), tls=tls)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAXLINE_")}
    return subprocess.run(
        [sys.executable, "-m", "paxline.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**base, "PAXLINE_HOME": str(ROOT / ".no-such-stack"), **env},
    )  # fmt: skip


def test_tls_cluster_elects_commits_and_serves_reads_with_the_ca(
    tls_cluster: LocalCluster, pki: tuple[TestCA, TestCA]
) -> None:
    ca, _ = pki
    assert all(url.startswith("https://") for url in tls_cluster.endpoints)
    leader = tls_cluster.wait_for_leader()
    with CoordinatorClient(
        tls_cluster.endpoints, token=tls_cluster.token, timeout=20, ca=ca.ca_path
    ) as client:
        assert isinstance(client.submit_job(_spec("tls-a")), JobSubmitted)
        assert client.job("tls-a").spec.name == "tls-a"
        reply = client.heartbeat("w-tls", capacity=8)
        assert {p.job for p in reply.assignment} == {"tls-a"}
        for node_id in tls_cluster.nodes:
            view = client.node_status(tls_cluster.nodes[node_id].url)
            assert view["tls"] is True
            # Every node learnt the others' API as https (forwarding goes there).
            assert all(str(u).startswith("https://") for u in dict(view["peers"]).values())
    # Through a follower only: it forwards to the leader's HTTPS API and verifies it.
    follower = next(i for i in tls_cluster.nodes if i != leader)
    with CoordinatorClient(
        [tls_cluster.nodes[follower].url], token=tls_cluster.token, timeout=20, ca=ca.ca_path
    ) as client:
        assert isinstance(client.submit_job(_spec("tls-b")), JobSubmitted)
        assert {j.spec.name for j in client.jobs()} >= {"tls-a", "tls-b"}


def test_client_without_the_ca_or_with_another_ca_is_refused_at_once(
    tls_cluster: LocalCluster, pki: tuple[TestCA, TestCA]
) -> None:
    ca, other = pki
    for given in (None, other.ca_path):
        started = time.monotonic()
        client = CoordinatorClient(tls_cluster.endpoints, timeout=20, ca=given)
        with client, pytest.raises(CoordinatorTLSError, match="certificate verify failed") as err:
            client.jobs()
        # One round over the three nodes, not the 20 s deadline of an outage.
        assert time.monotonic() - started < 5
        assert "PAXLINE_TLS_CA" in str(err.value)
    # Plain HTTP to an HTTPS node: retried like an outage, with a hint in the last error.
    http = [u.replace("https://", "http://") for u in tls_cluster.endpoints]
    plain = CoordinatorClient(http, timeout=1)
    with plain, pytest.raises(CoordinatorUnavailable, match="serve HTTPS"):
        plain.jobs()

    coords = ",".join(tls_cluster.endpoints)
    refused = _cli(["jobs", "--coordinators", coords], {})
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
    assert "certificate verify failed" in lines[0]
    ok = _cli(["jobs", "--coordinators", coords, "--json"], {"PAXLINE_TLS_CA": str(ca.ca_path)})
    assert ok.returncode == 0, ok.stderr
    assert "tls-a" in {j["spec"]["name"] for j in json.loads(ok.stdout)}


def _dropped(cluster: LocalCluster, node_id: int) -> dict[str, int]:
    view = cluster.status(node_id)
    assert view is not None, f"node {node_id} does not answer"
    return {str(k): int(v) for k, v in dict(view["frames_dropped"]).items()}


def test_peer_with_a_certificate_from_another_ca_cannot_join(
    tls_cluster: LocalCluster, pki: tuple[TestCA, TestCA]
) -> None:
    ca, other = pki
    good = tls_cluster.nodes[3].tls
    assert good is not None
    leader = tls_cluster.wait_for_leader()
    if leader == 3:  # node 3 is the one to replace: hand the lead to another node first
        tls_cluster.kill(3)
        leader = tls_cluster.wait_for_leader(exclude=3)
    ballot = dict(tls_cluster.status(leader) or {})["ballot"]
    # Node 3 comes back with the cluster secret and our CA but a certificate from another
    # CA: only the others' check of its certificate stands between it and the consensus.
    tls_cluster.kill(3)
    wrong = other.issue("node3-wrong")
    tls_cluster.nodes[3].tls = TlsConfig(wrong.cert, wrong.key, ca.ca_path)
    tls_cluster.start_node(3)
    # Its API serves the foreign certificate: ask it as a client trusting the other CA would.
    rogue_view = CoordinatorClient([tls_cluster.nodes[3].url], ca=other.ca_path)

    def rogue_status() -> dict[str, object] | None:
        try:
            return rogue_view.node_status(tls_cluster.nodes[3].url)
        except CoordinatorUnavailable:
            raise
        except Exception:
            return None

    wait_until(lambda: rogue_status() is not None, 20, "node 3's API")
    before = {i: _dropped(tls_cluster, i).get("tls_refused", 0) for i in (1, 2)}

    endpoints = [tls_cluster.nodes[i].url for i in (1, 2)]
    with CoordinatorClient(endpoints, token=tls_cluster.token, timeout=20, ca=ca.ca_path) as c:
        assert isinstance(c.submit_job(_spec("tls-without-3")), JobSubmitted)
    committed = int(str(dict(tls_cluster.status(leader) or {})["commit_index"]))
    # Both good nodes keep refusing node 3's connections (it retries every 0.1 s); after a
    # dozen refusals each since the commit, node 3 has had every chance to hear of it.
    wait_until(
        lambda: all(_dropped(tls_cluster, i).get("tls_refused", 0) >= before[i] + 12
                    for i in (1, 2)),
        20, "nodes 1 and 2 to refuse node 3's handshakes",
    )  # fmt: skip
    rogue = rogue_status()
    rogue_view.close()
    assert rogue is not None
    assert int(str(rogue["applied_index"])) < committed, "node 3 learnt a commit it must not"
    assert rogue["role"] != "leader"
    assert dict(rogue["frames_dropped"]).get("tls_failed", 0) > 0
    # Its campaigns never reached the others: the same leader in the same ballot.
    for i in (1, 2):
        view = tls_cluster.status(i)
        assert view is not None and view["leader_id"] == leader
    assert dict(tls_cluster.status(leader) or {})["ballot"] == ballot

    # The same node, data and secret with a certificate our CA signed: it catches up.
    tls_cluster.kill(3)
    tls_cluster.nodes[3].tls = good
    tls_cluster.start_node(3)
    tls_cluster.wait_all_applied(timeout=30)
    caught_up = tls_cluster.status(3)
    assert caught_up is not None and int(str(caught_up["applied_index"])) >= committed


def test_bad_tls_settings_stop_the_node_with_one_line(
    tmp_path: Path, pki: tuple[TestCA, TestCA], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, other = pki
    node = ca.issue("solo")
    foreign = other.issue("foreign")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    monkeypatch.setenv("PAXLINE_CLUSTER_SECRET", "a-secret-of-16-chars-or-more")
    monkeypatch.setenv("PAXLINE_API_TOKEN", "token-token")
    for k in ("PAXLINE_TLS_CERT", "PAXLINE_TLS_KEY", "PAXLINE_TLS_CA"):
        monkeypatch.delenv(k, raising=False)

    def refused(cert: str, key: str, ca_file: str) -> str:
        with pytest.raises(ConfigError) as err:
            config_from_env(1, "1=127.0.0.1:1", "127.0.0.1:2", tmp_path / "d", True, "new",
                            tls_cert=cert, tls_key=key, tls_ca=ca_file)  # fmt: skip
        return str(err.value)

    c, k, a = str(node.cert), str(node.key), str(ca.ca_path)
    assert "missing --tls-ca (PAXLINE_TLS_CA)" in refused(c, k, "")
    assert "--tls-cert" in refused("", k, a) and "missing" in refused("", k, a)
    assert refused(str(tmp_path / "nope.pem"), k, a).endswith(
        "cannot read (No such file or directory)"
    )
    assert "--tls-cert" in refused(k, k, a) and "no PEM certificate" in refused(k, k, a)
    assert "does not match" in refused(c, str(foreign.key), a)
    assert "encrypted" in refused(c, str(encrypted), a)
    assert "no PEM CA certificate" in refused(c, k, k)
    # Nothing a key file holds ends up in a message.
    assert "PRIVATE KEY" not in refused(c, str(encrypted), a)

    # The real command: exit 2 and one line, before touching the data directory.
    run = _cli(
        ["coordinator", "run", "--id=1", "--peers=1=127.0.0.1:1", "--api=127.0.0.1:2",
         f"--data-dir={tmp_path / 'd'}", "--initial-cluster=new"],
        {"PAXLINE_CLUSTER_SECRET": "a-secret-of-16-chars-or-more",
         "PAXLINE_API_TOKEN": "token-token", "PAXLINE_TLS_CERT": c,
         "PAXLINE_TLS_KEY": str(tmp_path / "missing.key"), "PAXLINE_TLS_CA": a},
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: --tls-key {tmp_path / 'missing.key'}: cannot read (No such file or directory)"
    ]
    assert not (tmp_path / "d").exists()


def test_a_client_ca_file_that_cannot_be_used_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(CoordinatorTLSError, match="no such file"):
        CoordinatorClient(["https://127.0.0.1:1"], ca=tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(CoordinatorTLSError, match=f"CA file {junk}: cannot use it"):
        CoordinatorClient(["https://127.0.0.1:1"], ca=junk)
