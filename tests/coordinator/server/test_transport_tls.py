"""Peer transport over mutual TLS on loopback sockets, with a CA made by the test.

Nodes whose certificates the CA signed exchange frames both ways. A node holding the right
cluster secret and trusting our CA, but with a certificate from another CA, is refused at the
handshake in both directions (inbound, only the accepting node's check of the client
certificate stops it), and so is a plain-TCP sender with a correctly signed HMAC frame: their
frames are never delivered, each refusal is counted, and the good link keeps working. Run on
both event loops the node may use (asyncio's and uvloop's): the accepting side's handshake
reads from the stream by hand, and a first version that let the loop do it
(`StreamWriter.start_tls`) lost the ClientHello on uvloop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from coordinator.server.tls import TlsConfig
from coordinator.server.transport import PeerTransport, encode_frame
from paxline.localstack.common import free_port
from tests.coordinator.server.certs import NodeCert, TestCA

SECRET = b"cluster-secret-for-tls-tests"

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def _tls(c: NodeCert) -> TlsConfig:
    return TlsConfig(c.cert, c.key, c.ca)


async def _eventually(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_mutual_tls_delivers_between_nodes_of_one_ca_and_refuses_others(
    tmp_path: Path, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    ca = TestCA(tmp_path / "ca")
    other_ca = TestCA(tmp_path / "other-ca", name="somebody else's CA")
    ports = {i: free_port() for i in (1, 2, 3)}
    peers = {i: ("127.0.0.1", p) for i, p in ports.items()}
    got: dict[int, list[tuple[int, bytes]]] = {1: [], 2: [], 3: []}

    def collect(node: int) -> Callable[[int, bytes], None]:
        return lambda sender, body: got[node].append((sender, body))

    async def scenario() -> None:
        a = PeerTransport(1, peers[1], peers, SECRET, collect(1), tls=_tls(ca.issue("node1")))
        b = PeerTransport(2, peers[2], peers, SECRET, collect(2), tls=_tls(ca.issue("node2")))
        # Node 3 knows the cluster secret and trusts our CA; only its certificate is wrong.
        wrong = other_ca.issue("node3")
        rogue_tls = TlsConfig(wrong.cert, wrong.key, ca.ca_path)
        rogue = PeerTransport(3, peers[3], peers, SECRET, collect(3), tls=rogue_tls)
        for t in (a, b, rogue):
            await t.start()
        try:
            a.send(2, b"a to b")
            b.send(1, b"b to a")
            await _eventually(lambda: got[2] == [(1, b"a to b")], "a's frame at b")
            await _eventually(lambda: got[1] == [(2, b"b to a")], "b's frame at a")

            rogue.send(2, b"let me in")
            b.send(3, b"not for you")
            # Refused inbound (b checks rogue's certificate) and outbound (b checks the
            # certificate of whoever listens at node 3's address), and on the rogue's side.
            await _eventually(
                lambda: (
                    b.dropped["tls_refused"] >= 3
                    and b.dropped["tls_failed"] >= 1
                    and rogue.dropped["tls_failed"] >= 3
                ),
                "the rogue's handshakes to be refused and counted on both sides",
            )

            # A plain-TCP sender with a frame that carries a correct HMAC: TLS refuses it
            # before any frame is read.
            refused = b.dropped["tls_refused"]
            _, writer = await asyncio.open_connection(*peers[2])
            writer.write(encode_frame(SECRET, 1, b"plain text frame") * 4)
            await writer.drain()
            await _eventually(
                lambda: b.dropped["tls_refused"] > refused, "the plain sender to be refused"
            )
            writer.close()

            a.send(2, b"still serving")
            await _eventually(lambda: (1, b"still serving") in got[2], "a frame after the rogue")
            assert got[2] == [(1, b"a to b"), (1, b"still serving")]
            assert got[3] == [], "the rogue heard nothing"
            assert rogue.received == 0
            assert b.dropped["bad_mac"] == 0, "refused by TLS, not by the HMAC"
        finally:
            for t in (a, b, rogue):
                await t.stop()

    with caplog.at_level(logging.WARNING, logger="coordinator.server.transport"):
        LOOPS[loop](scenario())
    warnings = [r.getMessage() for r in caplog.records]
    inbound = [m for m in warnings if "inbound" in m and "certificate verify failed" in m]
    assert inbound, warnings  # b checked the rogue's certificate and said why it refused
    # Rate-limited: the rogue was refused 3+ times by node 2 and said so once (only the rogue
    # dials node 2 and fails).
    assert len([m for m in warnings if "with node 2 at" in m]) == 1, warnings
    assert not any("PRIVATE KEY" in m for m in warnings)
