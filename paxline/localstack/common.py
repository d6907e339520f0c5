"""Helpers shared by the Kafka and Redis launchers: pid files, port probes, waits."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = [
    "ServiceError",
    "free_port",
    "launcher_main",
    "port_open",
    "process_alive",
    "read_pid",
    "stop_pid",
    "wait_until",
]


class ServiceError(Exception):
    """A local service could not be fetched, started, reached or stopped.

    Defined here rather than in `pipeline.errors` because this package must import nothing
    outside the standard library (the scripts run it with the system Python).
    """


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Poll `condition` until it holds; returns the seconds it took or raises naming `what`."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    if pid <= 0:  # kill(0 or -1, ...) would address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead once reaped-able.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # Not our child (`paxline up` exited long ago): it is reaped by init, which may take
    # seconds; an exited process is dead for us as soon as it is a zombie.
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False  # no /proc (not Linux): kill(0) is all we know


def stop_pid(pid_file: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process, wait for it to exit, SIGKILL as a last resort.

    Returns False when nothing was running. A clean stop matters for Kafka: it lets the broker
    close its log segments so the next start does not run recovery.
    """
    pid = read_pid(pid_file)
    if pid is None or not process_alive(pid):
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not process_alive(pid), timeout, f"pid {pid} to exit")
    except ServiceError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not process_alive(pid), 10, f"pid {pid} to die after SIGKILL")
    pid_file.unlink(missing_ok=True)
    return True


def launcher_main(
    service: str,
    doc: str | None,
    argv: list[str] | None,
    actions: Mapping[str, Callable[[argparse.Namespace], str]],
    stop: Callable[[Path], bool],
    status: Callable[[Path], str | None],
    options: Callable[[argparse.ArgumentParser], object] = lambda parser: None,
) -> int:
    """`scripts/<service> <command>`, the same for every launcher: `actions` (start, fetch,
    which) print what they return; `stop` says whether anything ran; `status` prints the
    running service or exits 3 with "<service> is not running" (1 stays an error), so a
    script can tell a stopped service from a broken launcher. A `ServiceError` is one
    line on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog=f"scripts/{service}", description=doc)
    parser.add_argument("command", choices=[*actions, "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=Path(f".paxline/{service}"))
    options(parser)
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            print(f"{service} stopped" if stop(args.data_dir) else f"{service} was not running")
        elif args.command == "status":
            running = status(args.data_dir)
            if running is None:
                print(f"{service} is not running")
                return 3
            print(running)
        else:
            print(actions[args.command](args))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):  # a closed stdout (`| head`) is not a failure
        sys.stdout.flush()
    return 0
