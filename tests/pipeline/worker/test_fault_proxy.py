"""The chaos tests' TCP fault proxy (fault_proxy.py) does what it claims on real sockets:
passes bytes, stalls them (held, then delivered when healed) and resets connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from fault_proxy import FaultProxy


@pytest.fixture
def echo() -> Iterator[int]:
    """A plain TCP echo server on a free port."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets it: that is the test
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        srv.close()


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def test_passes_bytes_both_ways(echo: int) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy.port) as s:
        s.sendall(b"hello")
        assert s.recv(100) == b"hello"
        assert proxy.connections == 1


def test_stall_holds_bytes_until_healed(echo: int) -> None:
    with FaultProxy(echo) as proxy, _connect(proxy.port) as s:
        s.sendall(b"one")
        assert s.recv(100) == b"one"
        proxy.stall()
        s.sendall(b"two")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)
        proxy.heal()
        s.settimeout(5)
        assert s.recv(100) == b"two"


def test_stall_also_holds_new_connections(echo: int) -> None:
    with FaultProxy(echo) as proxy:
        proxy.stall()
        with _connect(proxy.port) as s:  # the kernel accepts; nothing comes back
            s.sendall(b"x")
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(100)
            proxy.heal()
            s.settimeout(5)
            assert s.recv(100) == b"x"


def test_reset_kills_open_connections_and_refuses_new_ones_until_healed(echo: int) -> None:
    with FaultProxy(echo) as proxy:
        s = _connect(proxy.port)
        s.sendall(b"a")
        assert s.recv(100) == b"a"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            s.sendall(b"b")
            s.recv(100)
        s.close()
        opened: list[socket.socket] = []
        with pytest.raises(ConnectionResetError):  # in the handshake or on first use
            opened.append(_connect(proxy.port))
            opened[0].sendall(b"c")
            opened[0].recv(100)
        for s2 in opened:
            s2.close()
        proxy.heal()
        with _connect(proxy.port) as s3:
            s3.sendall(b"d")
            assert s3.recv(100) == b"d"
