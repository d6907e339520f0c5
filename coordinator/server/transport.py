"""TCP peer transport: length-prefixed frames, each authenticated with HMAC-SHA256.

Wire format of one frame: `length u32 | mac 32 bytes | sender u32 | body`, where `length`
counts everything after itself and `mac = HMAC-SHA256(secret, sender || body)`. Paxos
tolerates lost, duplicated and reordered messages, so the transport is deliberately
fire-and-forget: a full queue or a broken connection drops frames instead of blocking the
consensus loop. What it must never do is deliver a frame it cannot authenticate, or crash
on one: such frames are dropped and counted by reason.

With `tls` the same frames travel inside mutual TLS (`tls.py`): every link, in either
direction, presents this node's certificate and accepts only a peer whose certificate the
CA signed. The HMAC stays on every frame all the same (defense in depth: the CA's signature
*and* the cluster secret, not either one alone). A connection whose handshake fails is
refused before a single frame is read, counted as `tls_refused` (inbound) or `tls_failed`
(outbound), and logged with OpenSSL's reason at most once per peer and reason every
`_TLS_LOG_EVERY` seconds, so a misconfigured node retrying 10 times a second cannot flood
the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from coordinator.client import ssl_reason
from coordinator.server.tls import TlsConfig

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
# An inbound connection has this long to complete its TLS handshake: a peer that connects
# and says nothing must not hold a task and a socket for the handshake's 60 s default.
_HANDSHAKE_TIMEOUT = 2.0
_TLS_LOG_EVERY = 30.0


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
        tls: TlsConfig | None = None,
        on_peer_lost: Callable[[int], None] | None = None,
    ) -> None:
        """`on_peer_lost(peer)` is called when an established link to `peer` is closed by
        the other end or breaks (its process died or restarted): a hint for fast fail-over
        (`Node.peer_lost`), never evidence."""
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self.node_id = node_id
        self.listen = listen
        self.peers = {p: a for p, a in peers.items() if p != node_id}
        self._secret = secret
        self._on_frame = on_frame
        self._on_peer_lost = on_peer_lost
        self.max_frame = max_frame
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self.sent = 0
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self._accept_tls = tls.server_context(verify_clients=True) if tls else None
        self._connect_tls = tls.client_context(present_cert=True) if tls else None
        self._tls_logged: dict[tuple[str, str], float] = {}
        self._tls_refused_by: set[int] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.listen[0], self.listen[1])
        for peer in self.peers:
            self._open(peer)

    def _open(self, peer: int) -> asyncio.Task[None]:
        self._queues[peer] = asyncio.Queue(_QUEUE_LIMIT)
        task = asyncio.create_task(self._sender(peer), name=f"peer-{peer}")
        self._tasks.append(task)
        self._senders[peer] = task
        return task

    def add_peer(self, peer: int, address: tuple[str, int]) -> asyncio.Task[None] | None:
        """Open a link to `peer` (a node the replicated membership added, or one a peer's
        hello names). Returns the new sender task for the caller to supervise, or None if the
        link was already open to that address. A new address replaces the old link."""
        if peer == self.node_id:
            return None
        if self.peers.get(peer) == address and peer in self._senders:
            return None
        if peer in self._senders:
            self.remove_peer(peer)
        self.peers[peer] = address
        return self._open(peer)

    def remove_peer(self, peer: int) -> None:
        """Close the link to `peer` (removed from the membership): its queued frames are
        dropped, and frames from it are dropped from now on as `unknown_sender`."""
        self.peers.pop(peer, None)
        task = self._senders.pop(peer, None)
        queue = self._queues.pop(peer, None)
        if queue is not None:
            self._discard(queue)
        if task is not None:
            task.cancel()
            self._tasks.remove(task)

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
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._connect_tls,
                    server_hostname=host if self._connect_tls else None,
                )  # fmt: skip
        except ssl.SSLError as exc:  # before OSError, of which it is one
            self.dropped["tls_failed"] += 1
            self._log_tls(f"node {peer} at {host}:{port}", exc)
            return False
        except (OSError, TimeoutError):
            return False
        # While the peer keeps refusing our certificate (see below) every attempt connects
        # and is refused: those connections are logged at debug, the refusal as a warning.
        level = logging.DEBUG if peer in self._tls_refused_by else logging.INFO
        log.log(level, "connected to node %d at %s:%d", peer, host, port)
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
                    refusal = _tls_refusal(closed)
                    if refusal is not None:
                        # TLS 1.3 lets the client finish its handshake before the server has
                        # checked the client's certificate; a refusal arrives as an alert on
                        # the first read. Not a connection: back off as for a dead peer.
                        return self._refused(peer, refusal)
                    self._tls_refused_by.discard(peer)
                    self.dropped["connection_lost"] += 1
                    self._lost(peer)
                    break
                chunks = [get.result()]
                while not queue.empty() and len(chunks) < 512:
                    chunks.append(queue.get_nowait())
                writer.write(b"".join(chunks))
                await writer.drain()
                self.sent += len(chunks)
        except ssl.SSLError as exc:  # the same refusal, met by a write
            return self._refused(peer, exc)
        except (OSError, ConnectionError):
            self.dropped["connection_lost"] += 1
            self._lost(peer)
        finally:
            log.log(level, "connection to node %d closed", peer)
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved, so asyncio does not log it as unhandled
            closed.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    await writer.wait_closed()
        return True

    def _lost(self, peer: int) -> None:
        if self._on_peer_lost is not None:
            try:
                self._on_peer_lost(peer)
            except Exception:  # a hint; never let it take the link down
                log.exception("peer-lost hint for node %d failed", peer)

    def _refused(self, peer: int, exc: ssl.SSLError) -> bool:
        self.dropped["tls_failed"] += 1
        self._tls_refused_by.add(peer)
        host, port = self.peers.get(peer, ("?", 0))
        self._log_tls(f"node {peer} at {host}:{port}", exc)
        return False

    def _discard(self, queue: asyncio.Queue[bytes]) -> None:
        while not queue.empty():
            queue.get_nowait()
            self.dropped["peer_unreachable"] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        try:
            read: Callable[[int], Awaitable[bytes]] = reader.readexactly
            if self._accept_tls is not None:
                tls = _ServerTls(self._accept_tls, reader, writer)
                try:
                    async with asyncio.timeout(_HANDSHAKE_TIMEOUT):
                        await tls.handshake()
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    self.dropped["tls_refused"] += 1
                    host = writer.get_extra_info("peername") or ("?", 0)
                    self._log_tls(f"inbound connection from {host[0]}", exc)
                    return
                read = tls.readexactly
            while True:
                head = await read(_LEN.size)
                (length,) = _LEN.unpack(head)
                if length > self.max_frame or length < _MAC_SIZE + _SENDER.size:
                    # The stream cannot be resynchronised after a bogus length: hang up.
                    reason = "oversized" if length > self.max_frame else "undersized"
                    self.dropped[reason] += 1
                    log.warning("dropping peer connection: %s frame (%d bytes)", reason, length)
                    return
                inner = await read(length)
                self._deliver(inner)
        except asyncio.IncompleteReadError:
            pass
        except (OSError, ConnectionError):
            pass
        finally:
            self._inbound.discard(writer)
            writer.close()

    def _log_tls(self, who: str, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            reason = "handshake timed out"
        elif isinstance(exc, ssl.SSLError):
            reason = ssl_reason(exc)
        else:
            reason = f"connection closed during the handshake ({type(exc).__name__})"
        key = (who, reason)
        now = time.monotonic()
        if now - self._tls_logged.get(key, -_TLS_LOG_EVERY) >= _TLS_LOG_EVERY:
            self._tls_logged[key] = now
            log.warning("TLS with %s refused: %s (counted in frames_dropped as tls_refused/"
                        "tls_failed; logged every %.0fs at most)", who, reason,
                        _TLS_LOG_EVERY)  # fmt: skip

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


def _tls_refusal(closed: asyncio.Future[bytes]) -> ssl.SSLError | None:
    if closed.done() and not closed.cancelled():
        exc = closed.exception()
        if isinstance(exc, ssl.SSLError):
            return exc
    return None


_T = TypeVar("_T")


class _ServerTls:
    """The accepting side of TLS over an already accepted plain stream, driven by hand
    through memory BIOs.

    Why not `start_server(ssl=...)`: its failed handshakes never reach the connection
    callback, so a refused peer could not be counted. Why not `StreamWriter.start_tls`: on
    uvloop the peer's ClientHello may already sit in the StreamReader's buffer when the
    callback runs, and the handshake then waits for bytes that were consumed (seen in
    tests/coordinator/server/test_transport_tls.py). Reading the stream ourselves consumes
    whatever is buffered, on any event loop. The peer links only read on the accepting side,
    so decryption is all this needs besides the handshake."""

    def __init__(
        self, ctx: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._reader = reader
        self._writer = writer
        self._plain = bytearray()

    async def handshake(self) -> None:
        await self._drive(self._tls.do_handshake)

    async def readexactly(self, n: int) -> bytes:
        while len(self._plain) < n:
            try:
                chunk = await self._drive(lambda: self._tls.read(65536))
            except ssl.SSLZeroReturnError:  # the peer closed TLS cleanly
                chunk = b""
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self._plain), n)
            self._plain += chunk
        data = bytes(self._plain[:n])
        del self._plain[:n]
        return data

    async def _drive(self, op: Callable[[], _T]) -> _T:
        while True:
            try:
                result = op()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._reader.read(65536)
                if not data:
                    raise asyncio.IncompleteReadError(b"", None) from None
                self._incoming.write(data)
                continue
            except ssl.SSLError:
                await self._flush()  # the alert that tells the peer why it was refused
                raise
            await self._flush()
            return result

    async def _flush(self) -> None:
        out = self._outgoing.read()
        if out:
            self._writer.write(out)
            with contextlib.suppress(OSError):
                await self._writer.drain()
