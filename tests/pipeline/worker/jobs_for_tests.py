"""Jobs the end-to-end tests submit by path (`tests/pipeline/worker/jobs_for_tests.py:NAME`),
each with its own topics so tests in one module never share input."""

from __future__ import annotations

from pipeline.job import Job


def _counter(name: str, topic: str, partitions: int = 6) -> Job:
    """Counts per key prefix (`key:seq` values) in a Redis view: state that must count every
    record exactly once, whatever fails."""
    return (
        Job(name)
        .source(topic, partitions=partitions, value="str")
        .key_by(lambda v: v.split(":", 1)[0])
        .count()
        .to_redis("counts")
    )


scaling = _counter("scaling", "scaling-in")
worker_kill = _counter("wkill", "wkill-in")
leader_kill = _counter("lkill", "lkill-in")

poison = (
    Job("poison")
    .source("poison-in", partitions=2, value="json")
    .map(lambda e: {**e, "ratio": 10 / e["d"]})
    .to_kafka("poison-out")
)

not_a_job = 42
