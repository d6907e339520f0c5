"""RabbitMQ stream sources end to end (issue 19; docs/architecture.md, "RabbitMQ sources"):
a real RabbitMQ node (Debian's rabbitmq-server, stream plugin), real Kafka, Redis, a 3-node
coordinator group and worker processes.

A stream source keeps the job's guarantee: its offsets are agreed through Paxos and, under
exactly-once, committed in the Kafka transaction with the outputs, so a worker killed with
SIGKILL mid-stream leaves output and state equal to one failure-free run (the exactly-once
checker, reading the stage-0 input from the streams)."""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Iterator

import pytest
from e2e_stack import Stack, read_view, wait_workers
from eos_checker import check, read_partitions

from paxline.localstack.common import wait_until
from paxline.localstack.rabbitmq import RabbitNode
from pipeline.executor.records import InRecord
from pipeline.loading import load_job
from pipeline.rabbitmq.streams import StreamReader, publish

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
JOBS = "tests/pipeline/worker/jobs_rabbitmq.py"


@pytest.fixture(autouse=True)
def stream_url(rabbitmq_node: RabbitNode, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # The jobs read the URL at import: here (load_job) and in the workers (env below).
    monkeypatch.setenv("PAXLINE_RABBITMQ_STREAM", rabbitmq_node.stream_url)
    yield rabbitmq_node.stream_url


def _start(stack: Stack, url: str, *ids: str) -> None:
    for w in ids:
        stack.start_worker(w, env={"PAXLINE_RABBITMQ_STREAM": url})
    wait_workers(stack, len(stack.workers))


def _submit(stack: Stack, attr: str) -> None:
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr


def _agreed(stack: Stack, job: str) -> dict[tuple[str, int], int]:
    with stack.client() as client:
        return {(p.topic, p.partition): p.offset or 0 for p in client.offsets(job)}


def _stream_read(
    url: str, topic: str, streams: dict[int, str], counts: dict[int, int]
) -> dict[int, list[InRecord]]:
    """Every record of the streams, as the worker reads them (the checker's stage-0 input)."""
    reader = StreamReader(topic, streams, url)
    out: dict[int, list[InRecord]] = {p: [] for p in streams}
    try:
        reader.assign([(topic, p, None) for p in streams])

        def complete() -> bool:
            for (_, p), recs in reader.poll_batch(5000, 0.2).items():
                out[p] += recs
            return all(len(out[p]) >= counts[p] for p in streams)

        wait_until(complete, 60, f"streams {sorted(streams.values())} read back")
    finally:
        reader.close()
    return out


def test_word_count_from_a_stream_equals_the_plain_python_count(
    stack: Stack, stream_url: str
) -> None:
    _start(stack, stream_url, "rw-1")
    _submit(stack, "wordcount")
    rng = random.Random(19)
    vocab = [f"w{i}" for i in range(40)]
    lines = {p: [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 8)))
                 for _ in range(1500)] for p in (0, 1)}  # fmt: skip
    for p, ls in lines.items():
        publish(stream_url, f"rmqwc-text-{p}", [line.encode() for line in ls])
    want = Counter(w for ls in lines.values() for line in ls for w in line.split())
    anchor = "paxline.rmqwc.rabbitmq.rmqwc-text"

    seen: list[object] = [None]

    def counted() -> bool:
        agreed = _agreed(stack, "rmqwc")
        view = read_view(stack, "rmqwc", "words")
        seen[0] = (agreed, {w: (view.get(w), n) for w, n in want.items() if view.get(w) != n})
        return (
            agreed.get((anchor, 0)) == 1500
            and agreed.get((anchor, 1)) == 1500
            and (view == dict(want))
        )

    try:
        wait_until(counted, 120, "the word count to match", interval=0.5)
    except Exception as exc:
        raise AssertionError(f"{exc}: agreed offsets, (view, want) differences: {seen[0]}") from exc
    stack.stop_workers()


def test_sigkill_of_the_worker_mid_stream_leaves_exactly_once_output(
    stack: Stack, stream_url: str
) -> None:
    _start(stack, stream_url, "rk-1", "rk-2")
    _submit(stack, "eos_kill")
    anchor = "paxline.rmqeos.rabbitmq.rmqeos-in"
    per_part = 3000
    rng = random.Random(7)
    values = {p: [f"k{rng.randrange(30)}:{i}".encode() for i in range(per_part)] for p in (0, 1)}
    chunks = 4
    size = per_part // chunks
    for c in range(chunks):
        before = sum(_agreed(stack, "rmqeos").values())
        for p in (0, 1):
            publish(stream_url, f"rmqeos-in-{p}", values[p][c * size : (c + 1) * size])
        # kill once this chunk is being processed, so the kill lands mid-stream
        wait_until(lambda b=before: sum(_agreed(stack, "rmqeos").values()) > b, 60, "progress")
        victim = ("rk-1", "rk-2")[c % 2]
        stack.kill_worker(victim, signal.SIGKILL)
        stack.start_worker(victim, env={"PAXLINE_RABBITMQ_STREAM": stream_url})
    done = {(anchor, 0): per_part, (anchor, 1): per_part}
    wait_until(lambda: all(_agreed(stack, "rmqeos").get(tp) == n for tp, n in done.items()),
               180, "the stream to be processed")  # fmt: skip
    streams = {0: "rmqeos-in-0", 1: "rmqeos-in-1"}
    inputs = _stream_read(stream_url, anchor, streams, {0: per_part, 1: per_part})

    def read(bootstrap: str, topic: str) -> dict[int, list[InRecord]]:
        return inputs if topic == anchor else read_partitions(bootstrap, topic)

    def exact() -> bool:
        report = check(load_job(f"{JOBS}:eos_kill"), stack.kafka, stack.redis, read=read)
        last[0] = str(report)
        return report.ok and report.outputs > 0

    last = [""]
    try:
        # the last stage may still be committing the final counts: wait for them, then exact
        wait_until(exact, 120, "exactly-once output", interval=1.0)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{last[0]}") from exc
    stack.stop_workers()
