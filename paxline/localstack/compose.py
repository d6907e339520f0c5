"""`paxline up` through docker compose, where a Docker engine answers.

"A Docker engine" is anything serving the Docker API where $DOCKER_HOST (default
/var/run/docker.sock) points: Docker itself, or podman's `podman system service`
(`scripts/container-engine start`). No `docker` CLI is needed for a unix socket: the engine
is asked `GET /_ping` directly.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from paxline.localstack.common import ServiceError, wait_until

__all__ = ["compose_command", "engine_available", "ping_socket", "project_dir", "up"]

ROOT = Path(__file__).resolve().parents[2]


def project_dir() -> Path:
    """The compose project: the current directory when it holds a docker-compose.yml (as
    for `docker compose` itself), else the repository paxline runs from."""
    cwd = Path.cwd()
    return cwd if (cwd / "docker-compose.yml").exists() else ROOT


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def ping_socket(path: str, timeout: float = 5.0) -> bool:
    """True when a Docker API (Docker or podman) answers `GET /_ping` on the unix socket."""
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def engine_available(timeout: float = 5.0) -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return ping_socket(host.removeprefix("unix://"), timeout)
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:  # fmt: skip
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise ServiceError("neither `docker compose` nor `docker-compose` is installed")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/cluster", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def up(workers: int, progress: Callable[[str], None] = print) -> None:
    where = project_dir()
    if not (where / ".env").exists():
        raise ServiceError("create .env first: cp .env.example .env (then set both secrets)")
    cmd = [*compose_command(), "up", "-d", "--build", "--scale", f"worker={workers}"]
    progress(f"running {' '.join(cmd[1:])} in {where} ...")
    subprocess.run(cmd, cwd=where, check=True)
    urls = [f"http://127.0.0.1:{p}" for p in (8701, 8702, 8703)]
    for url in urls:
        wait_until(lambda u=url: _healthy(u), 180, f"coordinator at {url}")  # type: ignore[misc]
        progress(f"  coordinator {url} is up")
    progress("paxline is up (docker compose)")
    progress("  kafka         kafka:9092 (inside the compose network)")
    progress("  redis         redis://redis:6379/0 (AOF, volume redis-data)")
    progress(f"  coordinators  {', '.join(urls)}")
    progress(f"  dashboard     {urls[0]}/")
    progress(f"  workers       {workers} (scale with: docker compose up -d --scale worker=N)")
    progress("next: docker compose run --rm cli submit examples/wordcount.py:job --wait")
