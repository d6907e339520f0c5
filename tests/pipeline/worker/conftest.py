"""A whole local stack per test module: the session's Kafka and Redis, a fresh 3-node
coordinator cluster, and worker processes the tests start, kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coordinator.client import CoordinatorClient
from pipeline.localstack.coordinators import LocalCluster
from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.redis import RedisServer

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Stack:
    kafka: str
    redis: str
    cluster: LocalCluster
    logs: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PAXLINE_KAFKA": self.kafka,
            "PAXLINE_REDIS": self.redis,
            "PAXLINE_COORDINATORS": ",".join(self.cluster.endpoints),
            "PAXLINE_API_TOKEN": self.cluster.token,
            "PYTHONPATH": str(ROOT),
        }

    def client(self) -> CoordinatorClient:
        return CoordinatorClient(self.cluster.endpoints, token=self.cluster.token, timeout=30)

    def paxline(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def start_worker(self, worker_id: str) -> None:
        log = open(self.logs / f"{worker_id}.log", "ab")  # noqa: SIM115 - owned by the child
        self.workers[worker_id] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker", "run", "--id", worker_id,
             "--batch-size", "500"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers.pop(worker_id)
        proc.send_signal(sig)
        proc.wait(60)

    def stop_workers(self) -> None:
        for worker_id in list(self.workers):
            self.kill_worker(worker_id, signal.SIGTERM)


@pytest.fixture(scope="module")
def stack(
    kafka_broker: KafkaBroker,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    cluster = LocalCluster(base / "coordinators", env={"PAXLINE_WORKER_SESSION_TIMEOUT": "3"})
    cluster.start()
    logs = base / "logs"
    logs.mkdir()
    s = Stack(kafka_broker.bootstrap, redis_server.url, cluster, logs)
    try:
        yield s
    finally:
        s.stop_workers()
        cluster.stop()
