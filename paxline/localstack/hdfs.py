"""A local HDFS for the file sink's tests (issue 18): Hadoop's MiniDFSCluster (one namenode,
one datanode, WebHDFS on, everything on 127.0.0.1) from ``org.apache.hadoop:hadoop-client-
minicluster`` (Maven Central, SHA-256 pinned, cached in ~/.cache/paxline/hdfs), started with
the launcher that jar ships (``org.apache.hadoop.test.MiniDFSClusterManager``; no javac needed).

    scripts/hdfs fetch
    scripts/hdfs start [--data-dir .paxline/hdfs] [--port 9870]   # prints the webhdfs:// URL
    scripts/hdfs stop  [--data-dir .paxline/hdfs]

Standard library only, like the other launchers (the scripts run it with the system Python).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack import maven
from paxline.localstack.common import (
    ServiceError,
    free_port,
    launcher_main,
    process_alive,
    read_pid,
    stop_pid,
    wait_until,
)
from paxline.localstack.maven import cache_root

__all__ = ["VERSION", "MiniHdfs", "fetch", "start", "status", "stop"]

VERSION = "3.5.0"
HEAP = "-Xms128m -Xmx768m"
_MAIN = "org.apache.hadoop.test.MiniDFSClusterManager"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.paxline</groupId><artifactId>hdfs-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.hadoop</groupId>
      <artifactId>hadoop-client-minicluster</artifactId><version>{version}</version></dependency>
  </dependencies>
</project>
"""

# SHA-256 of every jar `mvn dependency:copy-dependencies` brings for the POM above (runtime
# scope), recorded on the first fetch (2026-12-04). Maven checks Central's SHA-1 files; this
# pins the exact bytes on top.
PINNED_SHA256 = {
    "commons-logging-1.3.0.jar": "66d3c980470b99b0c511dad3dfc0ae7b265ec1fb144e96bc0253a8a175fd34d9",
    "hadoop-client-api-3.5.0.jar": (
        "cc59446ec9ebaceae56fdb8d8c21477766dc5d426325642151c796bec5c4e6b7"
    ),
    "hadoop-client-minicluster-3.5.0.jar": (
        "06772d24529e59939915979b3edba204d367750ef7dc5120411f35221dd4818c"
    ),
    "hadoop-client-runtime-3.5.0.jar": (
        "b7db3e60c5df1cd37c2995b3e0142e57487260706834e5325bbe0a5e683eedf1"
    ),
    "jsr305-3.0.2.jar": "766ad2a0783f2687962c8ad74ceecc38a28b9f72a2d085ee438b7813e928d0c7",
    "slf4j-api-1.7.36.jar": "d3ef575e3e4979678dc01bf1dcce51021493b4d11fb7f1be8ad982877c16a1c0",
    "snappy-java-1.1.10.4.jar": "55b30c94e5c4cc2d4b6976916098d0678a8a6cc7427fa8c875621bd94e731ac8",
}


def libs_dir(version: str = VERSION) -> Path:
    return cache_root() / "hdfs" / version / "libs"


def verify(libs: Path) -> None:
    """Every pinned jar is present with its pinned bytes, and no other jar is."""
    try:
        maven.verify(libs, PINNED_SHA256, "hdfs")
    except maven.JarFetchError as e:
        raise ServiceError(str(e)) from None


def fetch(version: str = VERSION, quiet: bool = False) -> Path:
    """Download the jars (hash-checked) once; later calls return the cached directory."""
    try:
        return maven.fetch_jars(
            libs_dir(version),
            _POM.format(version=version),
            PINNED_SHA256 if version == VERSION else None,
            f"hadoop-client-minicluster {version}",
            quiet=quiet,
            required=f"hadoop-client-minicluster-{version}.jar",
        )
    except maven.JarFetchError as e:
        raise ServiceError(str(e)) from None


@dataclass(frozen=True)
class MiniHdfs:
    """A started MiniDFSCluster: ``url`` is its WebHDFS root (``webhdfs://127.0.0.1:port``)."""

    http_port: int
    rpc_port: int
    data_dir: Path
    pid: int
    startup_seconds: float

    @property
    def url(self) -> str:
        return f"webhdfs://127.0.0.1:{self.http_port}"


def start(data_dir: Path, port: int | None = None, timeout: float = 240.0) -> MiniHdfs:
    """Start a fresh (formatted) cluster on ``data_dir`` and wait until WebHDFS answers.
    Idempotent: a cluster already running from ``data_dir`` is returned as is."""
    data_dir = data_dir.resolve()
    running = status(data_dir)
    if running is not None:
        return running
    t0 = time.monotonic()
    libs = fetch()
    data_dir.mkdir(parents=True, exist_ok=True)
    base = data_dir / "dfs"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    http_port, rpc_port = port or free_port(), free_port()
    java = shutil.which("java")
    if java is None:
        raise ServiceError("`java` is not on PATH; scripts/install-deps installs it")
    details = data_dir / "hdfs.json"  # written by the launcher once the cluster is up
    details.unlink(missing_ok=True)
    conf = {
        "hdfs.minidfs.basedir": base,
        "dfs.webhdfs.enabled": "true",
        "dfs.permissions.enabled": "false",  # the sink writes as whoever runs the worker
        "dfs.replication": "1",
        "dfs.namenode.rpc-address": f"127.0.0.1:{rpc_port}",
        "dfs.namenode.http-address": f"127.0.0.1:{http_port}",
        "dfs.datanode.address": "127.0.0.1:0",
        "dfs.datanode.http.address": "127.0.0.1:0",  # WebHDFS redirects reads/writes here
        "dfs.datanode.ipc.address": "127.0.0.1:0",
        "dfs.datanode.hostname": "127.0.0.1",
    }
    argv = [java, *HEAP.split(), "-cp", f"{libs}/*", _MAIN, "-format", "-datanodes", "1",
            "-nnport", str(rpc_port), "-httpport", str(http_port),
            "-writeDetails", str(details)]  # fmt: skip
    for k, v in conf.items():
        argv += ["-D", f"{k}={v}"]
    with open(data_dir / "hdfs.out", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    (data_dir / "hdfs.pid").write_text(str(proc.pid))

    def ready() -> bool:
        if proc.poll() is not None:
            raise ServiceError(f"hdfs exited with code {proc.returncode} during start-up; "
                               f"see {data_dir / 'hdfs.out'}")  # fmt: skip
        return details.exists() and details.stat().st_size > 0

    try:
        wait_until(ready, timeout, f"the HDFS minicluster (WebHDFS 127.0.0.1:{http_port})", 0.2)
    except ServiceError:
        stop(data_dir)
        raise
    (data_dir / "hdfs.state").write_text(f"{http_port} {rpc_port}")
    return MiniHdfs(http_port, rpc_port, data_dir, proc.pid, time.monotonic() - t0)


def status(data_dir: Path) -> MiniHdfs | None:
    data_dir = data_dir.resolve()
    pid = read_pid(data_dir / "hdfs.pid")
    try:
        http_s, rpc_s = (data_dir / "hdfs.state").read_text().split()
    except (OSError, ValueError):
        return None
    if pid is None or not process_alive(pid):
        return None
    return MiniHdfs(int(http_s), int(rpc_s), data_dir, pid, 0.0)


def stop(data_dir: Path) -> bool:
    data_dir = data_dir.resolve()
    (data_dir / "hdfs.state").unlink(missing_ok=True)
    return stop_pid(data_dir / "hdfs.pid", timeout=30.0)


def main(argv: list[str] | None = None) -> int:
    def started(args: argparse.Namespace) -> str:
        h = start(args.data_dir, args.port)
        return f"HDFS minicluster on {h.url} (pid {h.pid}, {h.startup_seconds:.1f}s)"

    def running(data_dir: Path) -> str | None:
        h = status(data_dir)
        return None if h is None else f"hdfs running on {h.url} (pid {h.pid})"

    return launcher_main(
        "hdfs", __doc__, argv,
        {"fetch": lambda args: f"hdfs minicluster {VERSION} jars in {fetch()}", "start": started},
        stop, running,
        lambda p: p.add_argument("--port", type=int, default=None,
                                 help="WebHDFS port (default: free)"),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
