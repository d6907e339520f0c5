"""Start and stop a private RabbitMQ node with the stream plugin on (issue 19).

The node is Debian's `rabbitmq-server` package (3.10+, which has streams) run as the current
user from its scripts in /usr/lib/rabbitmq/bin - not the package's system service - with
everything of its own under one directory: Mnesia and logs, the enabled-plugins file
(`rabbitmq_stream`), a config file with the AMQP and stream listeners, an Erlang cookie (HOME
points there) and its own epmd port, so it never meets the system node or another test run.
`scripts/install-deps` installs the package; this module never installs anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import time
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

__all__ = ["RabbitNode", "ensure_installed", "start", "status", "stop"]

RABBIT_BIN = Path(os.environ.get("PAXLINE_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PORT_NAMES = ("amqp", "stream", "dist", "epmd")


@dataclass(frozen=True)
class RabbitNode:
    data_dir: Path
    pid: int
    amqp_port: int
    stream_port: int
    version: str
    startup_seconds: float

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def stream_url(self) -> str:
        return f"rabbitmq-stream://guest:guest@127.0.0.1:{self.stream_port}/%2F"


def ensure_installed() -> Path:
    """The directory of RabbitMQ's own scripts (not /usr/sbin's wrapper, which switches to the
    `rabbitmq` user and talks to the system node)."""
    server = RABBIT_BIN / "rabbitmq-server"
    if server.exists() and shutil.which("erl"):
        return RABBIT_BIN
    raise ServiceError(
        f"rabbitmq-server is not installed ({server} missing): run scripts/install-deps "
        "(as root on Debian/Ubuntu: apt-get install rabbitmq-server, 3.10 or newer)"
    )


def _read_ports(data_dir: Path) -> dict[str, int]:
    try:
        text = (data_dir / "ports").read_text()
        return {k: int(v) for k, v in (line.split("=") for line in text.split())}
    except (OSError, ValueError):
        return {}


def _ports(data_dir: Path, stream_port: int | None, amqp_port: int | None = None) -> dict[str, int]:
    """The last run's ports when they are all free (clients keep their URLs), else new ones."""
    old = _read_ports(data_dir)
    reuse = set(old) == set(PORT_NAMES) and not any(port_open(p) for p in old.values())
    if (reuse and (stream_port is None or old["stream"] == stream_port)
            and (amqp_port is None or old["amqp"] == amqp_port)):  # fmt: skip
        return old
    ports_file = data_dir / "ports"
    ports = {name: free_port() for name in PORT_NAMES}
    if stream_port is not None:
        ports["stream"] = stream_port
    if amqp_port is not None:
        ports["amqp"] = amqp_port
    ports_file.write_text("".join(f"{k}={v}\n" for k, v in ports.items()))
    return ports


def _env(data_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(data_dir / "home"),  # ~/.erlang.cookie: the node's own cookie
        RABBITMQ_MNESIA_BASE=str(data_dir / "mnesia"),
        RABBITMQ_LOG_BASE=str(data_dir / "log"),
        RABBITMQ_NODENAME=f"paxline-{ports['amqp']}@localhost",
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(ports["amqp"]),
        RABBITMQ_DIST_PORT=str(ports["dist"]),
        ERL_EPMD_PORT=str(ports["epmd"]),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(data_dir / "enabled_plugins"),
        RABBITMQ_CONFIG_FILE=str(data_dir / "rabbitmq.conf"),
        RABBITMQ_PID_FILE=str(data_dir / "rabbitmq.pid"),
        RABBITMQ_PLUGINS_EXPAND_DIR=str(data_dir / "plugins-expand"),
        RABBITMQ_CONF_ENV_FILE=str(data_dir / "rabbitmq-env.conf"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(data_dir / "advanced.config"),
        RABBITMQ_USE_LONGNAME="false",
    )
    return env


def _configure(data_dir: Path, ports: dict[str, int]) -> None:
    home = data_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(os.urandom(16).hex().upper())
        cookie.chmod(0o400)
    (data_dir / "rabbitmq-env.conf").write_text("")
    # The plugin file is what `rabbitmq-plugins --offline enable rabbitmq_stream` writes.
    (data_dir / "enabled_plugins").write_text("[rabbitmq_stream].\n")
    (data_dir / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{ports['amqp']}\n"
        f"stream.listeners.tcp.1 = 127.0.0.1:{ports['stream']}\n"
        "stream.advertised_host = 127.0.0.1\n"
        f"stream.advertised_port = {ports['stream']}\n"
        "loopback_users = none\n"
        # the test machine's disk is shared and small; do not stop publishers at 50 MB free
        "disk_free_limit.absolute = 10MB\n"
    )


def _version(bin_dir: Path) -> str:
    for p in (bin_dir.parent / "lib").glob("rabbitmq_server-*"):
        return p.name.removeprefix("rabbitmq_server-")
    return "unknown"


def start(
    data_dir: Path,
    stream_port: int | None = None,
    timeout: float = 90.0,
    amqp_port: int | None = None,
) -> RabbitNode:
    """Start the node in the background on `data_dir` and wait until its AMQP and stream
    listeners answer; idempotent for a node already running from the same directory."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    existing = status(data_dir)
    if existing is not None:
        return existing
    bin_dir = ensure_installed()
    t0 = time.monotonic()
    ports = _ports(data_dir, stream_port, amqp_port)
    _configure(data_dir, ports)
    env = _env(data_dir, ports)
    log_file = data_dir / "rabbitmq.out"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "rabbitmq-server")], env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=data_dir,
        )  # fmt: skip
    (data_dir / "launcher.pid").write_text(str(proc.pid))

    def ready() -> bool:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise ServiceError(f"rabbitmq-server exited with {proc.returncode}: {tail}")
        return port_open(ports["amqp"]) and port_open(ports["stream"])

    try:
        wait_until(ready, timeout, f"RabbitMQ on 127.0.0.1:{ports['amqp']}/{ports['stream']}")
    except ServiceError:
        stop(data_dir)
        raise
    pid = read_pid(data_dir / "rabbitmq.pid") or proc.pid
    return RabbitNode(data_dir, pid, ports["amqp"], ports["stream"], _version(bin_dir),
                      time.monotonic() - t0)  # fmt: skip


def status(data_dir: Path) -> RabbitNode | None:
    data_dir = data_dir.resolve()
    pid = read_pid(data_dir / "rabbitmq.pid")
    ports = _read_ports(data_dir)
    if pid is None or not process_alive(pid) or set(ports) != set(PORT_NAMES):
        return None
    if not (port_open(ports["amqp"]) and port_open(ports["stream"])):
        return None
    return RabbitNode(data_dir, pid, ports["amqp"], ports["stream"], _version(RABBIT_BIN), 0.0)


def stop(data_dir: Path) -> bool:
    """SIGTERM the node (it closes its stream segments), then end its private epmd."""
    data_dir = data_dir.resolve()
    stopped = stop_pid(data_dir / "rabbitmq.pid", timeout=30.0)
    launcher = read_pid(data_dir / "launcher.pid")
    if launcher is not None and process_alive(launcher):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher, signal.SIGTERM)
    (data_dir / "launcher.pid").unlink(missing_ok=True)
    epmd = _read_ports(data_dir).get("epmd")
    if epmd and shutil.which("epmd"):
        env = dict(os.environ, ERL_EPMD_PORT=str(epmd))
        subprocess.run(["epmd", "-kill"], env=env, capture_output=True, check=False, timeout=10)
    return stopped


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stream-port", type=int, default=None, help="(default: free)")
        parser.add_argument("--amqp-port", type=int, default=None, help="(default: free)")

    def started(args: argparse.Namespace) -> str:
        n = start(args.data_dir, args.stream_port, amqp_port=args.amqp_port)
        how = f"ready in {n.startup_seconds:.1f}s" if n.startup_seconds else "already running"
        return (f"rabbitmq {n.version} {how}: {n.amqp_url} (AMQP), {n.stream_url} (streams); "
                f"data {n.data_dir}")  # fmt: skip

    def running(data_dir: Path) -> str | None:
        n = status(data_dir)
        return (
            None if n is None else f"rabbitmq running (pid {n.pid}): {n.amqp_url}, {n.stream_url}"
        )

    return launcher_main(
        "rabbitmq", __doc__, argv,
        {"which": lambda args: f"rabbitmq-server scripts in {ensure_installed()}",
         "start": started},
        stop, running, options,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
