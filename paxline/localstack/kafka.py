"""Fetch, format, start and stop a real Apache Kafka broker (KRaft, one combined node).

The broker comes from Maven Central (`org.apache.kafka:kafka_2.13` and its runtime
dependencies, plus a log4j2 backend) via `mvn`, into a cache outside the repository, so the
second start needs no network. It runs on the machine's Java 17.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from paxline.localstack.maven import JarFetchError, cache_root, fetch_jars, parse_pins

__all__ = [
    "DEFAULT_VERSION",
    "KafkaBroker",
    "KafkaCluster",
    "Launch",
    "cluster_id",
    "fetch",
    "format_storage",
    "metadata_brokers",
    "prepare",
    "prepare_cluster",
    "start",
    "start_cluster",
    "status",
    "stop",
    "stop_cluster",
]

DEFAULT_VERSION = "4.4.0"
LOG4J_VERSION = "2.25.5"
# A 2-core, 24 GiB machine that also runs the test-suite: 1 GiB is plenty for a test broker
# and leaves room for coordinators, workers and Redis.
DEFAULT_HEAP = "-Xms256m -Xmx1g"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.paxline</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


# SHA-256 of every jar `mvn dependency:copy-dependencies` brings for the POM above (runtime
# scope), in `sha256sum` format (`cd <libs> && sha256sum -c <file>` checks a cache by hand),
# recorded from the cache every CI run of 2026-12-04 tested. A version without a file here
# (PAXLINE_KAFKA_VERSION) is fetched unpinned, with a warning.
_PINS_DIR = Path(__file__).parent / "pins"


def pinned_sha256(version: str) -> dict[str, str] | None:
    f = _PINS_DIR / f"kafka-{version}-log4j-{LOG4J_VERSION}.sha256"
    return parse_pins(f.read_text()) if f.exists() else None


def libs_dir(version: str = DEFAULT_VERSION) -> Path:
    return cache_root() / "kafka" / version / "libs"


def fetch(version: str = DEFAULT_VERSION, quiet: bool = False) -> Path:
    """Download the broker's jars once (hash-checked); later calls return the cache at once."""
    try:
        return fetch_jars(
            libs_dir(version),
            _POM.format(version=version, log4j=LOG4J_VERSION),
            pinned_sha256(version),
            f"Apache Kafka {version}",
            quiet=quiet,
            required=f"kafka_2.13-{version}.jar",
        )
    except JarFetchError as e:
        raise ServiceError(str(e)) from None


@dataclass(frozen=True)
class KafkaBroker:
    """Where a started broker listens and keeps its files."""

    port: int
    controller_port: int
    data_dir: Path
    version: str
    pid: int
    startup_seconds: float

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"


def _properties(data_dir: Path, port: int, controller_port: int) -> str:
    # Internal topics get few partitions: a test broker creates them on first use and 50
    # partitions each would add seconds to the first transaction and the first group commit.
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir / "logs"}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
"""


def _java(libs: Path, main: str, args: list[str], log_cfg: Path | None) -> list[str]:
    java = os.environ.get("JAVA_HOME")
    exe = str(Path(java) / "bin" / "java") if java else (shutil.which("java") or "java")
    cmd = [exe, *os.environ.get("PAXLINE_KAFKA_HEAP", DEFAULT_HEAP).split()]
    cmd += ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    if log_cfg is not None:
        cmd.append(f"-Dlog4j2.configurationFile={log_cfg}")
    cmd += ["-cp", str(libs / "*"), main, *args]
    return cmd


def _tool_java(libs: Path, main: str, args: list[str]) -> list[str]:
    """A short-lived Kafka tool (the storage formatter): a small heap, the client compiler
    only and the serial collector, which start it in about half the time of the broker's
    settings (the JIT work a broker amortises is wasted on a run of a second or two)."""
    java = os.environ.get("JAVA_HOME")
    exe = str(Path(java) / "bin" / "java") if java else (shutil.which("java") or "java")
    flags = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]
    return [exe, *flags, "-cp", str(libs / "*"), main, *args]


def cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id the way Kafka's `Uuid.randomUuid()` makes one: url-safe base64 of
    16 random bytes, drawn again while it would begin with "-" (Kafka never hands out such an
    id, since command-line parsers read it as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def format_storage(libs: Path, data_dir: Path, props: Path, cid: str | None = None) -> None:
    """Format the KRaft log directory once. The id travels as `--cluster-id=<id>`, so even an
    id that begins with "-" (allowed in one given by an operator) cannot read as an option."""
    if (data_dir / "logs" / "meta.properties").exists():
        return
    args = ["format", f"--cluster-id={cid or cluster_id()}", f"--config={props}"]
    proc = subprocess.run(
        _tool_java(libs, "kafka.tools.StorageTool", [*args, "--ignore-formatted"]),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ServiceError(f"kafka storage format failed:\n{(proc.stdout + proc.stderr)[-3000:]}")


def _state_file(data_dir: Path) -> Path:
    return data_dir / "kafka.ports"


@dataclass(frozen=True)
class Launch:
    """A broker ready to run: its command line and where it will listen. Made by `prepare`
    (fetch, configure, format once); run by `start` here, or by the stack's supervisor,
    which restarts it with the same command line and so the same ports."""

    argv: list[str]
    port: int
    controller_port: int
    data_dir: Path
    version: str

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"


def prepare(data_dir: Path, port: int | None = None, version: str = DEFAULT_VERSION) -> Launch:
    """Fetch the jars, write the broker's configuration and format its storage the first
    time. The client port is kept from the last run when it is free."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    libs = fetch(version)
    port = port or _previous_port(data_dir) or free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    props = data_dir / "server.properties"
    props.write_text(_properties(data_dir, port, controller_port))
    log_cfg = data_dir / "log4j2.properties"
    log_cfg.write_text(_LOG4J2.format(log=data_dir / "kafka.log"))
    format_storage(libs, data_dir, props)
    _state_file(data_dir).write_text(f"{port} {controller_port} {version}\n")
    argv = _java(libs, "kafka.Kafka", [str(props)], log_cfg)
    return Launch(argv, port, controller_port, data_dir, version)


def start(
    data_dir: Path,
    port: int | None = None,
    version: str = DEFAULT_VERSION,
    timeout: float = 120.0,
) -> KafkaBroker:
    """Start a broker on `data_dir` (formatting it the first time) and wait until it serves
    metadata. Idempotent: a broker already running from `data_dir` is returned as is."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    running = _running(data_dir)
    if running is not None:
        return running
    t0 = time.monotonic()
    launch = prepare(data_dir, port, version)
    port = launch.port
    log_file = data_dir / "kafka.log"
    with open(data_dir / "kafka.out", "ab") as out:
        proc = subprocess.Popen(
            launch.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    launch.pid_file.write_text(str(proc.pid))

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServiceError(
                f"kafka exited with code {proc.returncode} during start-up; see {log_file} "
                f"and {data_dir / 'kafka.out'}"
            )
        return metadata_brokers("127.0.0.1", port) > 0

    try:
        wait_until(ready, timeout, f"kafka on 127.0.0.1:{port} to answer metadata requests")
    except ServiceError:
        stop(data_dir)
        raise
    return KafkaBroker(
        port, launch.controller_port, data_dir, version, proc.pid, time.monotonic() - t0
    )


def _previous_port(data_dir: Path) -> int | None:
    """Reuse the last client port so that a restarted broker keeps its address."""
    try:
        previous = int(_state_file(data_dir).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if port_open(previous) else previous


def _running(data_dir: Path) -> KafkaBroker | None:
    pid = read_pid(data_dir / "kafka.pid")
    state = _state_file(data_dir)
    if pid is None or not process_alive(pid) or not state.exists():
        return None
    port_s, cport_s, version = state.read_text().split()
    if metadata_brokers("127.0.0.1", int(port_s)) <= 0:
        return None
    return KafkaBroker(int(port_s), int(cport_s), data_dir, version, pid, 0.0)


def status(data_dir: Path) -> KafkaBroker | None:
    return _running(data_dir.resolve())


def stop(data_dir: Path, grace: float = 60.0) -> bool:
    """SIGTERM the broker (a controlled shutdown that closes its log segments, so the next
    start runs no recovery) and SIGKILL it after `grace` seconds. A broker whose data is
    about to be thrown away (a test session's) needs no clean stop: a short `grace`."""
    return stop_pid(data_dir.resolve() / "kafka.pid", timeout=grace)


def metadata_brokers(host: str, port: int, timeout: float = 2.0) -> int:
    """Number of brokers a Metadata (v4) request to host:port reports; 0 if it does not answer.

    Spoken on the wire with the standard library so that the launcher needs no Kafka client.
    """
    client_id = b"paxline-probe"
    # Request header v1: api_key, api_version, correlation_id, client_id (int16 string).
    header = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    body = struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    payload = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(payload)) + payload)
            size = struct.unpack(">i", _recv_exact(s, 4))[0]
            resp = _recv_exact(s, size)
    except (OSError, struct.error, ConnectionError):
        return 0
    if len(resp) < 12:
        return 0
    correlation, _throttle, brokers = struct.unpack(">iii", resp[:12])
    return brokers if correlation == 7 else 0


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def main(argv: list[str] | None = None) -> int:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=None, help="client port (default: free)")
        parser.add_argument(
            "--version", default=os.environ.get("PAXLINE_KAFKA_VERSION", DEFAULT_VERSION)
        )

    def started(args: argparse.Namespace) -> str:
        b = start(args.data_dir, args.port, args.version)
        how = f"ready in {b.startup_seconds:.1f}s" if b.startup_seconds else "already running"
        return f"kafka {b.version} {how} on {b.bootstrap} (pid {b.pid}, data {b.data_dir})"

    def running(data_dir: Path) -> str | None:
        b = status(data_dir)
        return None if b is None else f"kafka {b.version} running on {b.bootstrap} (pid {b.pid})"

    return launcher_main(
        "kafka", __doc__, argv,
        {"fetch": lambda args: f"kafka {args.version} jars in {fetch(args.version)}",
         "start": started},
        stop, running, options,
    )  # fmt: skip


@dataclass(frozen=True)
class KafkaCluster:
    """A KRaft cluster of combined broker+controller nodes (node i lives in `data_dir/node{i}`)."""

    brokers: tuple[KafkaBroker, ...]

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)


def _cluster_properties(
    data_dir: Path, node_id: int, port: int, cport: int, voters: str, n: int
) -> str:
    rf = min(3, n)
    isr = min(2, rf)
    base = _properties(data_dir, port, cport)
    base = base.replace("node.id=1", f"node.id={node_id}")
    base = base.replace(
        f"controller.quorum.voters=1@127.0.0.1:{cport}", f"controller.quorum.voters={voters}"
    )
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        base = base.replace(f"{key}.replication.factor=1", f"{key}.replication.factor={rf}")
    for key in ("transaction.state.log", "share.coordinator.state.topic"):
        base = base.replace(f"{key}.min.isr=1", f"{key}.min.isr={isr}")
    return base + f"min.insync.replicas={isr}\ndefault.replication.factor={rf}\n"


def prepare_cluster(data_dir: Path, n: int = 3, version: str = DEFAULT_VERSION) -> list[Launch]:
    """Configure and format `n` combined broker+controller nodes in `data_dir/node{i}`.

    Ports are kept from the last run when every node recorded its own (a KRaft voter set
    names the controllers' addresses, so a restarted cluster must keep them); the storage is
    formatted once with one cluster id."""
    data_dir = data_dir.resolve()
    libs = fetch(version)
    dirs = [data_dir / f"node{i + 1}" for i in range(n)]
    previous = [_recorded_ports(d) for d in dirs]
    if all(p is not None and not port_open(p[0]) for p in previous):
        ports = [p for p in previous if p is not None]
    else:
        ports = [(free_port(), free_port()) for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    cid = cluster_id()
    launches: list[Launch] = []
    for i, ((port, cport), d) in enumerate(zip(ports, dirs, strict=True)):
        d.mkdir(parents=True, exist_ok=True)
        props = d / "server.properties"
        props.write_text(_cluster_properties(d, i + 1, port, cport, voters, n))
        log_cfg = d / "log4j2.properties"
        log_cfg.write_text(_LOG4J2.format(log=d / "kafka.log"))
        argv = _java(libs, "kafka.Kafka", [str(props)], log_cfg)
        launches.append(Launch(argv, port, cport, d, version))
    # One formatter JVM per node, side by side rather than one after another (each is
    # mostly JVM start-up); the first error is raised.
    with ThreadPoolExecutor(len(launches) or 1) as pool:
        done = [pool.submit(format_storage, libs, x.data_dir, x.data_dir / "server.properties",
                            cid) for x in launches]  # fmt: skip
        for f in done:
            f.result()
    for x in launches:
        _state_file(x.data_dir).write_text(f"{x.port} {x.controller_port} {version}\n")
    return launches


def _recorded_ports(d: Path) -> tuple[int, int] | None:
    try:
        port_s, cport_s, _ = _state_file(d).read_text().split()
        return int(port_s), int(cport_s)
    except (OSError, ValueError):
        return None


def start_cluster(
    data_dir: Path, n: int = 3, version: str = DEFAULT_VERSION, timeout: float = 240.0
) -> KafkaCluster:
    """Start `n` combined broker+controller nodes (controller quorum of `n`, internal topics
    with replication min(3, n) and `min.insync.replicas` min(2, n)) and wait until every
    node serves metadata that lists all `n` brokers."""
    t0 = time.monotonic()
    launches = prepare_cluster(data_dir, n, version)
    procs: list[tuple[Path, subprocess.Popen[bytes]]] = []
    for launch in launches:
        d = launch.data_dir
        with open(d / "kafka.out", "ab") as out:
            proc = subprocess.Popen(
                launch.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        launch.pid_file.write_text(str(proc.pid))
        procs.append((d, proc))

    def ready() -> bool:
        for d, proc in procs:
            if proc.poll() is not None:
                raise ServiceError(f"kafka exited with code {proc.returncode}; see {d}/kafka.log")
        return all(metadata_brokers("127.0.0.1", x.port) >= n for x in launches)

    try:
        wait_until(ready, timeout, f"a {n}-broker kafka cluster to list all brokers")
    except ServiceError:
        stop_cluster(data_dir)
        raise
    took = time.monotonic() - t0
    return KafkaCluster(
        tuple(
            KafkaBroker(x.port, x.controller_port, x.data_dir, version, proc.pid, took)
            for x, (_, proc) in zip(launches, procs, strict=True)
        )
    )


def stop_cluster(data_dir: Path, grace: float = 60.0) -> None:
    """SIGTERM every node at once, wait up to `grace` seconds for all of them together,
    SIGKILL what is left.

    One by one, each node's controlled shutdown asks the controller quorum to move its
    leaders away, and the last node waits for a quorum that is already gone until its own
    timeout (about a minute). Together, the nodes stop in seconds. A cluster whose data is
    about to be thrown away (a test session's) passes a short `grace`."""
    pid_files = sorted(data_dir.resolve().glob("node*/kafka.pid"))
    pids = {f: read_pid(f) for f in pid_files}
    live = {f: pid for f, pid in pids.items() if pid is not None and process_alive(pid)}
    for pid in live.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(process_alive(p) for p in live.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in live.values():
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(process_alive(p) for p in live.values()), 10,
               f"kafka pids {sorted(live.values())} to die after SIGKILL")  # fmt: skip
    for f in pid_files:
        f.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
