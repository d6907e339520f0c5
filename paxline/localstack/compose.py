"""`paxline up` through docker compose, where a Docker engine answers."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from paxline.localstack.common import ServiceError, wait_until

__all__ = ["compose_command", "engine_available", "up"]

ROOT = Path(__file__).resolve().parents[2]


def engine_available(timeout: float = 5.0) -> bool:
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
    if not (ROOT / ".env").exists():
        raise ServiceError("create .env first: cp .env.example .env (then set both secrets)")
    cmd = [*compose_command(), "up", "-d", "--build", "--scale", f"worker={workers}"]
    progress(f"running {' '.join(cmd[1:])} ...")
    subprocess.run(cmd, cwd=ROOT, check=True)
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
    progress("next: docker compose run --rm worker submit examples/wordcount.py:job --wait")
