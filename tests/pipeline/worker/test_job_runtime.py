"""Loading a job while Kafka is down (issue 13): `Worker._job` fails with a transient
`KafkaUnavailable` (its changelog topics cannot be created) and is retried with back-off. A
failed attempt must open no Kafka consumer: the worker retries it for as long as the broker is
down, and consumers made before the failure lived on (librdkafka threads, connection attempts)
for as long as anything held the exception's traceback (a log record with exc_info, a stall)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import msgspec
import pytest

from coordinator.client import CoordinatorClient
from coordinator.protocol import JobInfo, JobSpec
from pipeline.errors import KafkaUnavailable
from pipeline.loading import load_job
from pipeline.spec import build_spec
from pipeline.worker import Worker, WorkerClients, WorkerConfig

REF = "tests/pipeline/worker/jobs_for_tests.py:heal_redis_alo"  # stateful: has a changelog
SPEC = msgspec.convert(build_spec(load_job(REF), REF), JobSpec)


class OneJob(CoordinatorClient):
    """The coordinators' answer for the job, injected (nothing else is asked of them)."""

    def __init__(self) -> None:
        super().__init__(["http://127.0.0.1:9"], "t")

    def job(self, name: str) -> JobInfo:
        assert name == SPEC.name
        return JobInfo(SPEC, False, 0)


@pytest.fixture
def w() -> Iterator[Worker]:
    # Nothing listens on 127.0.0.1:9: the broker is down for the whole test.
    cfg = WorkerConfig("w-job", ["http://127.0.0.1:9"], "t", "127.0.0.1:9", "redis://127.0.0.1:9/0")
    clients = WorkerClients.from_config(cfg)
    clients.coordinators = OneJob()
    worker = Worker(cfg, clients)
    yield worker
    worker._txn_pool.shutdown(wait=True)
    worker._take_pool.shutdown(wait=True)
    del worker
    gc.collect()


def _threads() -> int:
    """OS threads of this process: librdkafka starts several per client, Python sees none."""
    return len(os.listdir("/proc/self/task"))


def test_a_job_load_that_fails_with_the_broker_down_opens_no_consumer(w: Worker) -> None:
    gc.collect()
    before = _threads()
    held: list[BaseException] = []
    try:
        w._job(SPEC.name)  # the changelog topic cannot be created: ~10 s admin deadline
    except KafkaUnavailable as exc:
        held.append(exc)  # as a log record or a stall might hold it
    assert held, "the job loaded although no broker answers"
    gc.collect()
    assert _threads() == before, "a failed attempt left Kafka clients running"
    assert SPEC.name not in w.jobs
