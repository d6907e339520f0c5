"""`ensure_changelogs` when several workers load a new job at once (issue 16), against the
real broker: every concurrent creator returns without error and with the changelog topics
visible with their partitions. Before the fix the loser of the CreateTopics race read the
metadata while the topic was not in it yet ("exists with 0 partitions") and its worker
stalled the job's partitions for seconds."""

from __future__ import annotations

import threading
import uuid

import pytest

from pipeline.changelog import changelog_topic
from pipeline.kafka import create_topics, topic_partitions
from pipeline.restore import ensure_changelogs

pytestmark = pytest.mark.integration

CREATORS = 3
ROUNDS = 2


def test_concurrent_creators_of_a_jobs_changelogs_all_succeed_at_once(
    kafka_bootstrap: str,
) -> None:
    for _ in range(ROUNDS):
        job = f"race-{uuid.uuid4().hex[:8]}"
        inputs = {0: f"{job}-in", 1: f"{job}-mid"}
        create_topics(kafka_bootstrap, {inputs[0]: 3, inputs[1]: 2})
        start = threading.Barrier(CREATORS)
        errors: list[BaseException] = []

        def load(start: threading.Barrier = start, inputs: dict[int, str] = inputs,
                 job: str = job, errors: list[BaseException] = errors) -> None:  # fmt: skip
            start.wait()
            try:
                ensure_changelogs(kafka_bootstrap, job, inputs)
                # Returning means the topics are usable: every creator sees them, counted.
                got = topic_partitions(kafka_bootstrap, [changelog_topic(job, 0),
                                                         changelog_topic(job, 1)])  # fmt: skip
                assert got == {changelog_topic(job, 0): 3, changelog_topic(job, 1): 2}, got
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=load) for _ in range(CREATORS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, [repr(e) for e in errors]


def test_an_existing_changelog_with_another_partition_count_is_still_refused(
    kafka_bootstrap: str,
) -> None:
    job = f"race-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {f"{job}-in": 3, changelog_topic(job, 0): 2})
    with pytest.raises(Exception, match="exists with 2 partitions, expected 3"):
        ensure_changelogs(kafka_bootstrap, job, {0: f"{job}-in"})
