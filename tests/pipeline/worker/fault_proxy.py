"""A TCP fault proxy for chaos tests: sits between a worker and one dependency (Redis, or one
Kafka broker whose advertised listener points at the proxy) and, on command, stalls or resets
the connections that go through it.

- `heal()`: bytes flow both ways (the default).
- `stall()`: every connection, open or new, stays open but nothing is forwarded (a network
  partition, a switch dropping packets, a peer frozen in GC): bytes read meanwhile are held
  and delivered once healed, as TCP would retransmit them.
- `reset()`: every open connection is closed with a TCP RST, and so is each new one until
  `heal()` (a dependency restarting, a firewall rejecting).

It runs an asyncio loop on its own daemon thread so that a synchronous test drives it with
plain calls. Real sockets only: the worker sees exactly what a real network fault shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

__all__ = ["FaultProxy"]

Mode = Literal["pass", "stall", "reset"]
_CHUNK = 65536
T = TypeVar("T")


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0):
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.connections = 0  # accepted so far: a test can check traffic really went through
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"fault-proxy-{upstream_port}")  # fmt: skip
        self._thread.start()
        self._flowing: asyncio.Event = self._call(self._make_event())
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server = self._call(
            asyncio.start_server(self._accept, "127.0.0.1", port)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]

    # ------------------------------------------------------------------ test-facing API
    def heal(self) -> None:
        self._call(self._set("pass"))

    def stall(self) -> None:
        self._call(self._set("stall"))

    def reset(self) -> None:
        self._call(self._set("reset"))

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ the loop
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(10)

    async def _make_event(self) -> asyncio.Event:
        ev = asyncio.Event()
        ev.set()
        return ev

    async def _set(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "pass":
            self._flowing.set()
            return
        self._flowing.clear()
        if mode == "reset":
            for pair in list(self._pairs):
                for w in pair:
                    _rst(w)
            self._pairs.clear()

    async def _close(self) -> None:
        self._server.close()
        for pair in list(self._pairs):
            for w in pair:
                _rst(w)
        self._pairs.clear()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _rst(c_writer)
            return
        try:
            u_reader, u_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _rst(c_writer)  # upstream down: the client sees what it would see without us
            return
        pair = (c_writer, u_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(c_reader, u_writer), self._pipe(u_reader, c_writer),
                return_exceptions=True,
            )  # fmt: skip
        finally:
            self._pairs.discard(pair)
            for w in pair:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await self._flowing.wait()  # stalled: read nothing more, so TCP pushes back
            data = await reader.read(_CHUNK)
            if not data:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            await self._flowing.wait()  # stalled after the read: hold the bytes until healed
            if writer.is_closing():
                return
            writer.write(data)
            await writer.drain()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
