"""TCP peer transport: length-prefixed frames, each authenticated with HMAC-SHA256.

Wire format of one frame: `length u32 | mac 32 bytes | sender u32 | body`, where `length`
counts everything after itself and `mac = HMAC-SHA256(secret, sender || body)`. Paxos
tolerates lost, duplicated and reordered messages, so the transport is deliberately
fire-and-forget: a full queue or a broken connection drops frames instead of blocking the
consensus loop. What it must never do is deliver a frame it cannot authenticate, or crash
on one: such frames are dropped and counted by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import struct
from collections import Counter
from collections.abc import Callable

__all__ = ["MAX_FRAME", "PeerTransport", "encode_frame"]

log = logging.getLogger(__name__)

MAX_FRAME = 32 * 1024 * 1024
_LEN = struct.Struct(">I")
_SENDER = struct.Struct(">I")
_MAC_SIZE = 32
_QUEUE_LIMIT = 10_000
_BACKOFF_MIN = 0.02
_BACKOFF_MAX = 0.1
_CONNECT_TIMEOUT = 1.0


def _mac(secret: bytes, sender: int, body: bytes) -> bytes:
    return hmac.new(secret, _SENDER.pack(sender) + body, hashlib.sha256).digest()


def encode_frame(secret: bytes, sender: int, body: bytes) -> bytes:
    inner = _mac(secret, sender, body) + _SENDER.pack(sender) + body
    return _LEN.pack(len(inner)) + inner


class PeerTransport:
    """Connections to and from the other coordinator nodes."""

    def __init__(
        self,
        node_id: int,
        listen: tuple[str, int],
        peers: dict[int, tuple[str, int]],
        secret: bytes,
        on_frame: Callable[[int, bytes], None],
        max_frame: int = MAX_FRAME,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self.node_id = node_id
        self.listen = listen
        self.peers = {p: a for p, a in peers.items() if p != node_id}
        self._secret = secret
        self._on_frame = on_frame
        self.max_frame = max_frame
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self.sent = 0
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.listen[0], self.listen[1])
        for peer in self.peers:
            self._queues[peer] = asyncio.Queue(_QUEUE_LIMIT)
            self._tasks.append(asyncio.create_task(self._sender(peer), name=f"peer-{peer}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
        for w in list(self._inbound):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The per-peer sender tasks, for the runtime to supervise."""
        return list(self._tasks)

    def send(self, to: int, body: bytes) -> None:
        queue = self._queues.get(to)
        if queue is None:
            self.dropped["unknown_destination"] += 1
            return
        frame = encode_frame(self._secret, self.node_id, body)
        try:
            queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped["send_queue_full"] += 1

    async def _sender(self, peer: int) -> None:
        """Keep one outbound connection to `peer` alive for the life of the node.

        Whatever ends one connection ends only that connection: a sender task that died
        would leave this node deaf to nobody and mute to one peer, which with one other node
        down is a cluster without a quorum and without any error to show for it."""
        queue = self._queues[peer]
        backoff = _BACKOFF_MIN
        while True:
            try:
                connected = await self._connection(peer, queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # uvloop, for one, raises RuntimeError (not ConnectionError) when a write
                # races with the peer closing the connection.
                self.dropped["connection_lost"] += 1
                log.warning("connection to node %d failed (%s); reconnecting", peer, exc)
                connected = True
            if connected:
                backoff = _BACKOFF_MIN
            else:
                # Frames queued for a dead peer are stale by the time it returns; Paxos
                # retransmits what still matters.
                self._discard(queue)
                # Capped well below the election timeout, so that a restarted peer hears
                # the leader before its own timer fires and it campaigns.
                backoff = min(backoff * 2, _BACKOFF_MAX)
            await asyncio.sleep(backoff)

    async def _connection(self, peer: int, queue: asyncio.Queue[bytes]) -> bool:
        """Send queued frames over one connection until it breaks; False if none was made."""
        host, port = self.peers[peer]
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return False
        log.info("connected to node %d at %s:%d", peer, host, port)
        # The peer never writes on this connection, so a completed read means it closed
        # (for instance it was killed and restarted). Without watching for that, some event
        # loops (uvloop) keep accepting writes into a dead socket and the peer never hears
        # from us again.
        closed = asyncio.ensure_future(reader.read(1))
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done or writer.is_closing():
                    get.cancel()  # a frame it already took is lost; Paxos retransmits
                    self.dropped["connection_lost"] += 1
                    break
                chunks = [get.result()]
                while not queue.empty() and len(chunks) < 512:
                    chunks.append(queue.get_nowait())
                writer.write(b"".join(chunks))
                await writer.drain()
                self.sent += len(chunks)
        except (OSError, ConnectionError):
            self.dropped["connection_lost"] += 1
        finally:
            log.info("connection to node %d closed", peer)
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved, so asyncio does not log it as unhandled
            closed.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    await writer.wait_closed()
        return True

    def _discard(self, queue: asyncio.Queue[bytes]) -> None:
        while not queue.empty():
            queue.get_nowait()
            self.dropped["peer_unreachable"] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                (length,) = _LEN.unpack(head)
                if length > self.max_frame or length < _MAC_SIZE + _SENDER.size:
                    # The stream cannot be resynchronised after a bogus length: hang up.
                    reason = "oversized" if length > self.max_frame else "undersized"
                    self.dropped[reason] += 1
                    log.warning("dropping peer connection: %s frame (%d bytes)", reason, length)
                    return
                inner = await reader.readexactly(length)
                self._deliver(inner)
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ConnectionError):
            pass
        finally:
            self._inbound.discard(writer)
            writer.close()

    def _deliver(self, inner: bytes) -> None:
        mac = inner[:_MAC_SIZE]
        (sender,) = _SENDER.unpack_from(inner, _MAC_SIZE)
        body = inner[_MAC_SIZE + _SENDER.size :]
        if not hmac.compare_digest(mac, _mac(self._secret, sender, body)):
            self.dropped["bad_mac"] += 1
            return
        if sender not in self.peers:
            self.dropped["unknown_sender"] += 1
            return
        self.received += 1
        try:
            self._on_frame(sender, body)
        except Exception:  # a malformed body must not take the connection (or node) down
            self.dropped["malformed"] += 1
            log.exception("dropping malformed frame from node %d", sender)
