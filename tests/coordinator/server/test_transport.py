"""Peer transport over real loopback sockets: authenticated frames arrive; garbage,
oversized frames and frames signed with the wrong secret are dropped and counted, and the
node keeps serving afterwards."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest

from coordinator.server.transport import PeerTransport, encode_frame
from paxline.localstack.common import free_port

SECRET = b"cluster-secret"


async def _eventually(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _raw(port: int, data: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.close()


def test_frames_are_authenticated_and_bad_ones_are_counted_not_fatal() -> None:
    async def scenario() -> None:
        p1, p2 = free_port(), free_port()
        peers = {1: ("127.0.0.1", p1), 2: ("127.0.0.1", p2)}
        got: list[tuple[int, bytes]] = []

        def on_frame(sender: int, body: bytes) -> None:
            if body == b"explode":
                raise ValueError("malformed body")
            got.append((sender, body))

        a = PeerTransport(1, peers[1], peers, SECRET, lambda s, b: None)
        b = PeerTransport(2, peers[2], peers, SECRET, on_frame, max_frame=1024)
        await a.start()
        await b.start()
        try:
            a.send(2, b"hello")
            await _eventually(lambda: got == [(1, b"hello")], "the first frame")

            await _raw(p2, encode_frame(b"wrong-secret", 1, b"forged"))
            await _raw(p2, encode_frame(SECRET, 9, b"from a stranger"))
            await _raw(p2, struct.pack(">I", 10_000_000) + b"x" * 64)
            await _raw(p2, b"\x00\x00\x00\x05garbage and more garbage")
            await _raw(p2, encode_frame(SECRET, 1, b"explode"))
            await _eventually(lambda: sum(b.dropped.values()) >= 5, "five bad frames to be counted")
            assert b.dropped == {
                "bad_mac": 1,
                "unknown_sender": 1,
                "oversized": 1,
                "undersized": 1,
                "malformed": 1,
            }

            a.send(2, b"still serving")
            await _eventually(lambda: (1, b"still serving") in got, "a frame after the attack")
            assert [body for _, body in got] == [b"hello", b"still serving"]
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        PeerTransport(1, ("127.0.0.1", 0), {}, b"", lambda s, b: None)


def test_a_connection_that_fails_in_an_unexpected_way_is_replaced_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop raises RuntimeError ("the handler is closed"), not ConnectionError, when a write
    races with the peer closing the connection. That once killed the sender task and left a
    node silently unable to reach one peer: with another node down, no quorum, no error."""

    async def scenario() -> None:
        p1, p2 = free_port(), free_port()
        peers = {1: ("127.0.0.1", p1), 2: ("127.0.0.1", p2)}
        got: list[bytes] = []
        a = PeerTransport(1, peers[1], peers, SECRET, lambda s, b: None)
        b = PeerTransport(2, peers[2], peers, SECRET, lambda s, body: got.append(body))
        await a.start()
        await b.start()
        try:
            a.send(2, b"before")
            await _eventually(lambda: got == [b"before"], "the first frame")

            real_write = asyncio.StreamWriter.write
            failures = [RuntimeError("unable to perform operation; the handler is closed")]

            def flaky_write(self: asyncio.StreamWriter, data: bytes) -> None:
                if failures:
                    raise failures.pop()
                real_write(self, data)

            monkeypatch.setattr(asyncio.StreamWriter, "write", flaky_write)
            a.send(2, b"lost with the connection")
            await _eventually(lambda: not failures, "the injected write failure")

            def resend_until_delivered() -> bool:
                if b"after" not in got:
                    a.send(2, b"after")
                return b"after" in got

            await _eventually(resend_until_delivered, "a frame after the failed write")
            assert a.dropped["connection_lost"] >= 1
            assert all(not t.done() for t in a.tasks), "the sender task must still run"
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_links_follow_add_and_remove_peer() -> None:
    """A node added to the membership gets a link (its frames are accepted, ours reach it);
    a removed one loses it: nothing is sent to it and its frames are dropped."""

    async def scenario() -> None:
        p1, p3 = free_port(), free_port()
        got1: list[tuple[int, bytes]] = []
        got3: list[tuple[int, bytes]] = []
        a = PeerTransport(1, ("127.0.0.1", p1), {1: ("127.0.0.1", p1)}, SECRET,
                          lambda s, b: got1.append((s, b)))  # fmt: skip
        c = PeerTransport(3, ("127.0.0.1", p3), {1: ("127.0.0.1", p1)}, SECRET,
                          lambda s, b: got3.append((s, b)))  # fmt: skip
        await a.start()
        await c.start()
        try:
            c.send(1, b"before")  # 1 does not know 3 yet
            await _eventually(lambda: a.dropped["unknown_sender"] == 1, "a stranger's frame")
            a.send(3, b"nowhere")
            assert a.dropped["unknown_destination"] == 1

            task = a.add_peer(3, ("127.0.0.1", p3))
            assert task is not None and task in a.tasks
            assert a.add_peer(3, ("127.0.0.1", p3)) is None  # already linked
            a.send(3, b"welcome")
            c.send(1, b"thanks")
            await _eventually(lambda: got3 == [(1, b"welcome")], "a frame to the added node")
            await _eventually(lambda: got1 == [(3, b"thanks")], "a frame from the added node")

            a.remove_peer(3)
            assert 3 not in a.peers and task not in a.tasks
            await _eventually(task.done, "the removed node's sender to stop")
            a.send(3, b"gone")
            c.send(1, b"still here")
            await _eventually(lambda: a.dropped["unknown_sender"] == 2, "the removed node's frame")
            assert a.dropped["unknown_destination"] == 2
            assert got1 == [(3, b"thanks")] and got3 == [(1, b"welcome")]
        finally:
            await a.stop()
            await c.stop()

    asyncio.run(scenario())


def test_a_link_closed_by_the_peer_is_reported_as_lost() -> None:
    """The fast fail-over hint (`Node.peer_lost`): when the peer's process goes away, its end
    of our link closes and the transport says so at once; stopping our own side does not."""

    async def scenario() -> None:
        p1, p2 = free_port(), free_port()
        peers = {1: ("127.0.0.1", p1), 2: ("127.0.0.1", p2)}
        lost: list[int] = []
        got: list[bytes] = []
        a = PeerTransport(1, peers[1], peers, SECRET, lambda s, b: None, on_peer_lost=lost.append)
        b = PeerTransport(2, peers[2], peers, SECRET, lambda s, body: got.append(body))
        await a.start()
        await b.start()
        try:
            a.send(2, b"hello")
            await _eventually(lambda: got == [b"hello"], "the link to come up")
            assert lost == []
            await b.stop()  # node 2 goes away: its sockets close
            await _eventually(lambda: lost[:1] == [2], "the closed link to be reported")
        finally:
            await a.stop()
            await b.stop()
        assert set(lost) == {2}

    asyncio.run(scenario())
