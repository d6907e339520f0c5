"""`paxline up` finds a Docker engine by asking the Docker API on $DOCKER_HOST's unix socket
(`GET /_ping`), so podman's `podman system service` counts and no `docker` CLI is needed."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from paxline.localstack.compose import engine_available, ping_socket, project_dir


class _Ping(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/_ping" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


class _Broken(_Ping):
    status = 500


def _serve(path: Path, handler: type[BaseHTTPRequestHandler]) -> Iterator[Path]:
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self) -> tuple[object, tuple[str, int]]:  # type: ignore[override]
            conn, _ = self.socket.accept()
            return conn, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)

    server = Server(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    yield from _serve(tmp_path / "engine.sock", _Ping)


def test_an_engine_answering_ping_on_docker_host_is_found(
    engine_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ping_socket(str(engine_socket))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    assert engine_available(timeout=2)


def test_no_socket_or_a_failing_engine_is_not_an_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'missing.sock'}")
    assert not engine_available(timeout=2)
    for path in _serve(tmp_path / "broken.sock", _Broken):
        assert not ping_socket(str(path), timeout=2)


def test_the_compose_project_is_the_current_directory_when_it_has_a_compose_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert project_dir() != tmp_path  # no compose file here: the repository paxline runs from
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert project_dir() == tmp_path
