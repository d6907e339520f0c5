"""`paxline up` on one machine: Kafka, Redis (AOF), 3 coordinators and N workers as background
processes, with all state and logs under one directory (default `.paxline/`).

What was started is recorded in `stack.json` there, so `paxline status` and `paxline down`
work from any later shell. The cluster secret and API token are generated once and kept in
that file (mode 0600); they are never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paxline.localstack import kafka, redis
from paxline.localstack.common import (
    ServiceError,
    free_port,
    process_alive,
    wait_until,
)
from paxline.localstack.coordinators import LocalCluster

__all__ = ["LocalStack", "StackInfo"]

Progress = Callable[[str], None]


@dataclass
class StackInfo:
    kafka: str
    redis: str
    coordinators: list[str]
    workers: dict[str, int]
    token: str
    home: Path

    def env(self) -> dict[str, str]:
        """Environment that points the CLI and workers at this stack."""
        return {
            "PAXLINE_KAFKA": self.kafka,
            "PAXLINE_REDIS": self.redis,
            "PAXLINE_COORDINATORS": ",".join(self.coordinators),
            "PAXLINE_API_TOKEN": self.token,
        }


class LocalStack:
    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.file = self.home / "stack.json"

    # ----------------------------------------------------------------------- persistence
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.file)

    def _cluster(self, data: dict[str, Any]) -> LocalCluster:
        ports = {int(i): (int(p[0]), int(p[1])) for i, p in data["coordinator_ports"].items()}
        return LocalCluster(
            self.home / "coordinators",
            size=len(ports),
            secret=data["secret"],
            token=data["token"],
            ports=ports,
            env={"PAXLINE_WORKER_SESSION_TIMEOUT": "10"},
        )

    def info(self) -> StackInfo | None:
        data = self._load()
        if not data:
            return None
        return StackInfo(
            kafka=data["kafka"],
            redis=data["redis"],
            coordinators=data["coordinators"],
            workers={k: int(v) for k, v in data.get("workers", {}).items()},
            token=data["token"],
            home=self.home,
        )

    # ---------------------------------------------------------------------------- up
    def up(self, workers: int = 2, progress: Progress = print) -> StackInfo:
        data = self._load()
        if not data:
            data = {
                "secret": secrets.token_urlsafe(32),
                "token": secrets.token_urlsafe(24),
                "coordinator_ports": {str(i): [free_port(), free_port()] for i in (1, 2, 3)},
                "workers": {},
            }
        progress("starting Apache Kafka (KRaft) ...")
        broker = kafka.start(self.home / "kafka")
        data["kafka"] = broker.bootstrap
        progress(f"  kafka {broker.version} on {broker.bootstrap}")
        progress("starting Redis (AOF on) ...")
        server = redis.start(self.home / "redis")
        data["redis"] = server.url
        progress(f"  redis on 127.0.0.1:{server.port}")
        cluster = self._cluster(data)
        data["coordinators"] = cluster.endpoints
        self._save(data)
        progress("starting 3 coordinators ...")
        running = {int(i): int(pid) for i, pid in data.get("coordinator_pids", {}).items()}
        for node_id in cluster.nodes:
            if not process_alive(running.get(node_id, 0)):
                cluster.start_node(node_id)
        leader = cluster.wait_for_leader(timeout=60)
        self._record_coordinator_pids(data, cluster)
        progress(f"  leader is node {leader}; API on {', '.join(cluster.endpoints)}")
        info = self.info()
        assert info is not None
        progress(f"starting {workers} workers ...")
        alive = {w: pid for w, pid in info.workers.items() if process_alive(pid)}
        for n in range(1, workers + 1):
            worker_id = f"worker-{n}"
            if worker_id not in alive:
                alive[worker_id] = self._spawn_worker(worker_id, info)
        data["workers"] = alive
        self._save(data)
        progress(f"  workers: {', '.join(sorted(alive))}")
        final = self.info()
        assert final is not None
        return final

    def _record_coordinator_pids(self, data: dict[str, Any], cluster: LocalCluster) -> None:
        pids = data.setdefault("coordinator_pids", {})
        for i, n in cluster.nodes.items():
            if n.proc is not None:
                pids[str(i)] = n.proc.pid
        self._save(data)

    def _spawn_worker(self, worker_id: str, info: StackInfo) -> int:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **info.env()}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        with open(logs / f"{worker_id}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "paxline.cli", "worker", "run", f"--id={worker_id}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=os.getcwd(),
            )  # fmt: skip
        return proc.pid

    # -------------------------------------------------------------------------- down
    def down(self, progress: Progress = print) -> None:
        """Stop in dependency order: workers first (their final commit and goodbye need the
        coordinators, or each waits out its timeouts), then coordinators, then Kafka and
        Redis side by side (nothing uses them any more)."""
        data = self._load()
        if not data:
            progress("nothing is running here")
            return
        workers = [int(p) for p in data.get("workers", {}).values()]
        coordinators = [int(p) for p in data.get("coordinator_pids", {}).values()]
        for group, pids, grace in (("workers", workers, 3.0), ("coordinators", coordinators, 2.0)):
            t0 = time.monotonic()
            killed = _terminate(pids, grace)
            note = f", {killed} killed after {grace:.0f}s" if killed else ""
            progress(f"stopped {len(pids)} {group} ({time.monotonic() - t0:.1f}s{note})")
        t0 = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            done = [pool.submit(redis.stop, self.home / "redis"),
                    pool.submit(kafka.stop, self.home / "kafka")]  # fmt: skip
            for f in done:
                f.result()
        progress(f"stopped kafka and redis ({time.monotonic() - t0:.1f}s)")
        data["workers"] = {}
        data["coordinator_pids"] = {}
        self._save(data)

    def process_table(self) -> list[dict[str, Any]]:
        data = self._load()
        rows: list[dict[str, Any]] = []
        if not data:
            return rows
        k = kafka.status(self.home / "kafka")
        rows.append({"service": "kafka", "address": data.get("kafka"), "up": k is not None})
        r = redis.status(self.home / "redis")
        rows.append({"service": "redis", "address": data.get("redis"), "up": r is not None})
        for i, pid in sorted(data.get("coordinator_pids", {}).items()):
            url = data["coordinators"][int(i) - 1]
            rows.append({"service": f"coordinator-{i}", "address": url, "up": process_alive(pid)})
        for w, pid in sorted(data.get("workers", {}).items()):
            rows.append({"service": w, "address": f"pid {pid}", "up": process_alive(int(pid))})
        return rows


def _exited(pid: int) -> Callable[[], bool]:
    return lambda: not process_alive(pid)


def _terminate(pids: list[int], grace: float) -> int:
    """SIGTERM every pid, wait up to `grace` seconds for all, SIGKILL the rest; returns how
    many had to be killed."""
    alive = [p for p in pids if process_alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not any(process_alive(p) for p in alive), grace, "processes to exit",
                   interval=0.05)  # fmt: skip
        return 0
    except ServiceError:
        stuck = [p for p in alive if process_alive(p)]
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(stuck)
