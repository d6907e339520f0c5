"""Workers come and go, crash with SIGKILL, and the coordinator leader dies mid-stream:
processing continues and no record is lost. The Redis view counts every record exactly once
(the per-partition applied offset guards replays); the Kafka sink may repeat (at-least-once).
Poison records go to the dead-letter topic with their provenance; bad jobs are refused with
an error naming the problem."""

from __future__ import annotations

import json
import signal
from collections import Counter

import msgspec
import orjson
import pytest
from e2e_stack import (
    Stack,
    json_values,
    produce,
    read_topic,
    read_view,
    wait_idle,
    wait_workers,
)

from paxline.localstack.common import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
JOBS = "tests/pipeline/worker/jobs_for_tests.py"


def _values(start: int, n: int, keys: int = 40) -> list[str]:
    return [f"k{i % keys}:{i}" for i in range(start, start + n)]


def _expected(values: list[str]) -> dict[str, int]:
    return dict(Counter(v.split(":", 1)[0] for v in values))


def _submit(stack: Stack, attr: str) -> None:
    done = stack.paxline("submit", f"{JOBS}:{attr}", "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr


def _owners(stack: Stack, job: str) -> Counter[str]:
    with stack.client() as client:
        return Counter(p.owner for p in client.offsets(job))


def test_growing_to_three_workers_and_back_to_one_rebalances_without_loss(stack: Stack) -> None:
    stack.start_worker("scale-1")
    wait_workers(stack, 1)
    _submit(stack, "scaling")
    sent: list[str] = []

    def feed(n: int) -> None:
        chunk = _values(len(sent), n)
        produce(stack.kafka, "scaling-in", (v.encode() for v in chunk))
        sent.extend(chunk)

    feed(5000)
    stack.start_worker("scale-2")
    stack.start_worker("scale-3")
    feed(5000)
    # Balanced: 12 partitions (6 source + 6 repartition) over 3 workers, 4 each.
    wait_until(lambda: sorted(_owners(stack, "scaling").values()) == [4, 4, 4], 30,
               "the job to spread over three workers")  # fmt: skip
    feed(5000)
    stack.kill_worker("scale-2", signal.SIGTERM)
    stack.kill_worker("scale-3", signal.SIGTERM)
    wait_until(lambda: _owners(stack, "scaling") == Counter({"scale-1": 12}), 30,
               "the job to shrink back to one worker")  # fmt: skip
    feed(5000)
    wait_idle(stack, "scaling")
    assert read_view(stack, "scaling", "counts") == _expected(sent)
    stack.stop_workers()


def test_sigkill_of_a_worker_mid_stream_loses_nothing_and_counts_once(stack: Stack) -> None:
    stack.start_worker("wk-1")
    stack.start_worker("wk-2")
    wait_workers(stack, 2)
    _submit(stack, "worker_kill")
    sent = _values(0, 20_000)
    produce(stack.kafka, "wkill-in", (v.encode() for v in sent[:10_000]))
    stack.kill_worker("wk-2", signal.SIGKILL)  # mid-stream: it holds half the partitions
    produce(stack.kafka, "wkill-in", (v.encode() for v in sent[10_000:15_000]))
    # Its session lapses and wk-1 takes everything over.
    wait_until(lambda: _owners(stack, "wkill") == Counter({"wk-1": 12}), 30,
               "the dead worker's partitions to move")  # fmt: skip
    stack.start_worker("wk-2")
    produce(stack.kafka, "wkill-in", (v.encode() for v in sent[15_000:]))
    wait_idle(stack, "wkill")
    assert read_view(stack, "wkill", "counts") == _expected(sent)
    stack.stop_workers()


def test_sigkill_of_the_coordinator_leader_mid_stream_loses_nothing(stack: Stack) -> None:
    stack.start_worker("lk-1")
    stack.start_worker("lk-2")
    wait_workers(stack, 2)
    _submit(stack, "leader_kill")
    sent = _values(0, 20_000)
    produce(stack.kafka, "lkill-in", (v.encode() for v in sent[:10_000]))
    leader = stack.cluster.wait_for_leader()
    stack.cluster.kill(leader, signal.SIGKILL)
    produce(stack.kafka, "lkill-in", (v.encode() for v in sent[10_000:]))
    new_leader = stack.cluster.wait_for_leader(30, exclude=leader)
    assert new_leader != leader
    wait_idle(stack, "lkill")
    assert read_view(stack, "lkill", "counts") == _expected(sent)
    stack.cluster.start_node(leader)
    stack.cluster.wait_for_leader(30)
    stack.stop_workers()


def test_poison_records_go_to_the_dead_letter_topic_with_headers(stack: Stack) -> None:
    stack.start_worker("p-1")
    wait_workers(stack, 1)
    _submit(stack, "poison")
    good = [orjson.dumps({"id": i, "d": 1 + i % 5}) for i in range(200)]
    bad = [b"{not json", orjson.dumps({"id": "zero", "d": 0}), b"\xff\xfe", orjson.dumps([1, 2])]
    values = good[:100] + bad + good[100:]
    produce(stack.kafka, "poison-in", values, keys=(b"same" for _ in values))
    wait_idle(stack, "poison")
    out = json_values(read_topic(stack.kafka, "poison-out"))
    assert sorted(o["id"] for o in out) == list(range(200))  # the job kept running
    dead = read_topic(stack.kafka, "paxline.poison.dlq")
    assert sorted(v for _, v, _ in dead) == sorted(bad)
    for _key, value, headers in dead:
        h = dict(headers)
        assert h["paxline.source.topic"] == b"poison-in"
        assert int(h["paxline.source.offset"]) == values.index(value)
        assert h["paxline.source.partition"].isdigit()
        assert h["paxline.error"], "the error text travels with the record"
    zero = next(dict(h) for _, v, h in dead if v == bad[1])
    assert b"ZeroDivisionError" in zero["paxline.error"]
    stack.stop_workers()


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (f"{JOBS}:missing", "missing"),
        (f"{JOBS}:not_a_job", "not a paxline Job"),
        ("tests/pipeline/worker/no_such_file.py:job", "no_such_file.py"),
        ("tests/pipeline/worker/bad_window_job.py:job", "allowed_lateness"),
        ("tests/pipeline/worker/bad_topic_job.py:job", "no spaces allowed"),
    ],
)
def test_a_bad_job_is_refused_with_an_error_naming_it(stack: Stack, ref: str, message: str) -> None:
    done = stack.paxline("submit", ref)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    with stack.client() as client:
        jobs = json.dumps(msgspec.to_builtins(client.jobs()))
    assert "badwindow" not in jobs and "badtopic" not in jobs


def test_pause_reset_and_resume_replays_a_job_from_the_reset_offsets(stack: Stack) -> None:
    stack.start_worker("r-1")
    wait_workers(stack, 1)
    _submit(stack, "replay")
    produce(stack.kafka, "replay-in", [orjson.dumps({"id": i}) for i in range(500)],
            keys=[str(i).encode() for i in range(500)])  # fmt: skip
    wait_idle(stack, "replay")
    assert len(read_topic(stack.kafka, "replay-out")) == 500

    assert stack.paxline("pause", "replay").returncode == 0
    assert set(_owners(stack, "replay")) == {None}
    refused = stack.paxline("reset-offsets", "replay", "--to", "replay-in:0=-1")
    assert refused.returncode == 2 and "TOPIC:PARTITION=OFFSET" in refused.stderr
    done = stack.paxline(
        "reset-offsets", "replay", "--to", "replay-in:0=0", "--to", "replay-in:1=0"
    )
    assert done.returncode == 0, done.stderr
    with stack.client() as client:
        assert {p.offset for p in client.offsets("replay") if p.topic == "replay-in"} == {0}
    assert stack.paxline("resume", "replay").returncode == 0
    wait_idle(stack, "replay")
    out = json_values(read_topic(stack.kafka, "replay-out"))
    assert Counter(o["id"] for o in out) == Counter({i: 2 for i in range(500)})
    stack.stop_workers()
