"""Jobs the end-to-end tests submit by path (`tests/pipeline/worker/jobs_for_tests.py:NAME`),
each with its own topics so tests in one module never share input."""

from __future__ import annotations

from dataclasses import replace

from pipeline.job import Job, session, tumbling


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


def _eos_windows(name: str) -> Job:
    """Clicks per user in 10 s tumbling windows, exactly-once to Kafka, window state in Redis."""
    return (
        Job(name, guarantee="exactly-once")
        .source(f"{name}-in", partitions=4, value="json")
        .key_by(lambda c: c["user"])
        .window(tumbling(seconds=10), timestamp=lambda c: c["ts"])
        .count()
        .to_kafka(f"{name}-out", value="json")
    )


def _eos_counter(name: str) -> Job:
    """Counts per key prefix, exactly-once into a Redis view."""
    return (
        Job(name, guarantee="exactly-once")
        .source(f"{name}-in", partitions=4, value="str")
        .key_by(lambda v: v.split(":", 1)[0])
        .count()
        .to_redis("counts")
    )


eos_worker_chaos = _eos_windows("eoswk")
eos_leader_chaos = _eos_windows("eoslk")
eos_zombie = _eos_windows("eoszombie")
eos_crash_after_a = _eos_counter("eoscrasha")
eos_crash_after_b = _eos_counter("eoscrashb")
eos_crash_after_c = _eos_counter("eoscrashc")
eos_checker_teeth = _eos_windows("eoscheck")
replay = (
    Job("replay")
    .source("replay-in", partitions=2, value="json")
    .map(lambda e: {**e, "seen": True})
    .to_kafka("replay-out")
)

# Self-healing (issue 13): each scenario has its own topics.
heal_redis_eos = _eos_counter("healredis")
heal_redis_pause = _eos_counter("healpause")
heal_redis_alo = _counter("healalo", "healalo-in", partitions=4)
heal_handover = _eos_windows("healhand")
heal_quorum = _eos_counter("healquorum")

# Chaos on the 3-broker cluster and through the fault proxy (issue 13, test_chaos_cluster.py).
chaos_leader_kill = _eos_windows("chleader")
chaos_broker_down = _counter("chdown", "chdown-in", partitions=4)
chaos_redis_proxy = _eos_counter("chredisproxy")
chaos_kafka_proxy = _eos_windows("chkafkaproxy")

# Issue 18: session windows closed at the end by the idle timer, exactly-once to Kafka.
# Lateness covers any stall of the stack (a stall shorter than it cannot change a result).
SESSION_GAP_MS = 2_000
eos_sessions = (
    Job("eossess", guarantee="exactly-once")
    .source("eossess-in", partitions=4, value="json")
    .key_by(lambda c: c["user"])
    .window(session(gap=2), allowed_lateness=5, timestamp=lambda c: c["ts"], idle_timeout=1)
    .count()
    .to_kafka("eossess-out", value="json")
)

# Issue 18: a stream-table join, exactly-once, killed with -9 while it joins.
eos_join = (
    Job("eosjoin", guarantee="exactly-once")
    .source("eosjoin-in", partitions=4, value="json")
    .key_by(lambda o: o["customer"])
    .join_table("eosjoin-customers", partitions=2, how="inner", value="json")
    .to_kafka("eosjoin-out", value="json")
)


def _clickviews_eos() -> Job:
    """examples/clickviews.py with an hour of grace: more than the test input spans, so which
    of the two streams reaches the joining partition first cannot make a record late."""
    from examples.clickviews import pair_key

    return (
        Job("eoscv", guarantee="exactly-once")
        .source("eoscv-clicks", partitions=4, value="json")
        .key_by(pair_key)
        .join_stream(
            "eoscv-views",
            partitions=4,
            within=60,
            grace=3600,
            key=pair_key,
            timestamp=lambda e: e["ts"],
        )
        .to_kafka("eoscv-out", value="json")
    )


eos_stream_join = _clickviews_eos()

# issue 16: state restored from the changelog after Redis lost it
restore_flush_eos = _eos_counter("rsflush")
restore_flush_alo = _counter("rsflushalo", "rsflushalo-in", partitions=4)
restore_wipe_eos = _eos_counter("rswipe")
restore_wipe_alo = _counter("rswipealo", "rswipealo-in", partitions=4)
# ... and the same loss for jobs without a changelog (Job(changelog=False))
restore_nolog_eos = replace(_eos_counter("rsnolog"), changelog=False)
restore_nolog_alo = replace(_counter("rsnologalo", "rsnologalo-in", partitions=4), changelog=False)

# Redis Sentinel failover (test_redis_failover_e2e.py).
failover_eos = _eos_counter("rsfail")
failover_alo = _counter("rsfailalo", "rsfailalo-in", partitions=4)

# Redis Cluster (test_redis_cluster_e2e.py).
cluster_eos = _eos_counter("rcfail")
cluster_alo = _counter("rcfailalo", "rcfailalo-in", partitions=4)
cluster_upgrade_alo = _counter("rcupalo", "rcupalo-in", partitions=4)


def _files_count(name: str, guarantee: str, fmt: str = "jsonl") -> Job:
    """A running count per user written to files (issue 18, kill -9 tests): each input
    record gives one output row ``{"user", "n", "count"}``."""
    import os

    return (
        Job(name, guarantee=guarantee)  # type: ignore[arg-type]
        .source(f"{name}-in", partitions=3, value="json")
        .key_by(lambda r: r["user"])
        .aggregate(None, lambda acc, r: {"user": r["user"], "n": r["n"],
                                         "count": (acc or {"count": 0})["count"] + 1})
        .to_files(os.environ.get("PAXLINE_FILES_URL", "paxline-files") + f"/{name}",
                  format=fmt, max_records=700)  # type: ignore[arg-type]
    )  # fmt: skip


files_eos = _files_count("fileseos", "exactly-once")
files_alo = _files_count("filesalo", "at-least-once")
files_hdfs = _files_count("fileshdfs", "exactly-once", "parquet")  # PAXLINE_FILES_URL=webhdfs://
