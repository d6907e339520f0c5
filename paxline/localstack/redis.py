"""Start and stop a local `redis-server` with AOF on (the exactly-once design relies on it).

`redis-server` comes from Debian's package; when it is missing and we run as root it is
installed, otherwise the error says what to install.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack.common import (
    ServiceError,
    free_port,
    launcher_main,
    port_open,
    process_alive,
    read_pid,
    stop_pid,
    wait_until,
)

__all__ = [
    "RedisServer",
    "command",
    "ensure_installed",
    "ping",
    "prepare",
    "start",
    "status",
    "stop",
]


@dataclass(frozen=True)
class RedisServer:
    port: int
    data_dir: Path
    pid: int
    version: str
    startup_seconds: float

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def ensure_installed() -> str:
    """Path of `redis-server`. Installing system packages is the job of
    `scripts/install-deps` (the Makefile runs it), never of the runtime package."""
    found = shutil.which("redis-server")
    if found:
        return found
    raise ServiceError(
        "redis-server is not installed: run scripts/install-deps (as root on Debian/Ubuntu), "
        "or install your platform's redis package (>= 6.2)"
    )


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis on 127.0.0.1:port answers PING (spoken raw, no client library)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _version(binary: str) -> str:
    if not binary:
        return "unknown"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return "unknown"


def start(
    data_dir: Path, port: int | None = None, timeout: float = 30.0, extra: Sequence[str] = ()
) -> RedisServer:
    """Start redis-server on `data_dir` with appendonly yes / appendfsync everysec;
    idempotent for a server already running from the same directory. `extra`: more
    redis-server options (a replica's `--replicaof host port`)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = status(data_dir)
    if existing is not None:
        return existing
    binary = ensure_installed()
    t0 = time.monotonic()
    port = _choose_port(data_dir, port)
    pid_file = data_dir / "redis.pid"
    log = data_dir / "redis.log"
    log_from = log.stat().st_size if log.exists() else 0
    args = [*command(binary, data_dir, port, daemonize=True), *extra]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServiceError(f"redis-server failed to start: {proc.stdout}{proc.stderr}")
    (data_dir / "redis.port").write_text(str(port))
    # Both, because something else may answer on a port taken between choosing and binding
    # it; redis-server writes its pid file only once it listens, and logs why it did not.
    wait_until(lambda: _listening(port, pid_file, log, log_from), timeout,
               f"redis on 127.0.0.1:{port} to answer PING")  # fmt: skip
    pid = read_pid(pid_file) or 0
    return RedisServer(port, data_dir, pid, _version(binary), time.monotonic() - t0)


class PortTaken(ServiceError):
    """redis-server could not listen: the port was taken after it was chosen."""


def _listening(port: int, pid_file: Path, log: Path, log_from: int) -> bool:
    if read_pid(pid_file) is not None and ping(port):
        return True
    if log.exists():
        with log.open("rb") as f:
            f.seek(log_from)
            if b"Failed listening on port" in f.read():
                raise PortTaken(f"redis-server could not listen on 127.0.0.1:{port} (in use)")
    return False


def _choose_port(data_dir: Path, port: int | None) -> int:
    """The port asked for, else the last run's when it is free (clients keep their URL)."""
    port_file = data_dir / "redis.port"
    if port is None and port_file.exists():
        previous = int(port_file.read_text().strip() or 0)
        port = previous if previous and not port_open(previous) else None
    return port or free_port()


def command(binary: str, data_dir: Path, port: int, daemonize: bool) -> list[str]:
    """redis-server's command line: AOF on with everysec fsync, no RDB snapshots, bound to
    127.0.0.1. Under the stack's supervisor it runs in the foreground (`daemonize=False`), so
    the supervisor is its parent and sees how it ends."""
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "yes" if daemonize else "no", "--pidfile", str(data_dir / "redis.pid"),
        "--logfile", str(data_dir / "redis.log"), "--save", "",
        "--protected-mode", "yes",
    ]  # fmt: skip


def prepare(data_dir: Path, port: int | None = None) -> tuple[list[str], int]:
    """A foreground redis-server command line for `data_dir` and the port it will use."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _choose_port(data_dir, port)
    (data_dir / "redis.port").write_text(str(port))
    return command(ensure_installed(), data_dir, port, daemonize=False), port


def status(data_dir: Path) -> RedisServer | None:
    data_dir = data_dir.resolve()
    pid = read_pid(data_dir / "redis.pid")
    port_file = data_dir / "redis.port"
    if pid is None or not process_alive(pid) or not port_file.exists():
        return None
    port = int(port_file.read_text().strip())
    if not ping(port):
        return None
    return RedisServer(port, data_dir, pid, _version(shutil.which("redis-server") or ""), 0.0)


def stop(data_dir: Path) -> bool:
    return stop_pid(data_dir.resolve() / "redis.pid", timeout=30.0)


def main(argv: list[str] | None = None) -> int:
    def started(args: argparse.Namespace) -> str:
        r = start(args.data_dir, args.port)
        how = f"ready in {r.startup_seconds:.1f}s" if r.startup_seconds else "already running"
        return f"redis {r.version} {how} on 127.0.0.1:{r.port} with AOF (data {r.data_dir})"

    def running(data_dir: Path) -> str | None:
        r = status(data_dir)
        return None if r is None else f"redis running on 127.0.0.1:{r.port} (pid {r.pid})"

    return launcher_main(
        "redis", __doc__, argv,
        {"which": lambda args: f"redis-server at {ensure_installed()}", "start": started},
        stop, running,
        lambda p: p.add_argument("--port", type=int, default=None, help="port (default: free)"),
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
