"""The paxline job of ``bench/pipeline.py``: the shape of ``examples/enrich.py`` on bench topics.

Topic and job names come from the environment (set by the benchmark for the submit and the
worker alike, so both resolve the same job): ``BENCH_PIPELINE_JOB``, ``BENCH_PIPELINE_SOURCE``,
``BENCH_PIPELINE_SINK``, ``BENCH_PIPELINE_PARTITIONS``. ``BENCH_PIPELINE_STATEFUL=1`` makes it the
keyed count instead (`key_by` the user, a running count per user in Redis, one output per
record with its id and the count); ``BENCH_PIPELINE_CHANGELOG=0`` submits it without a
changelog (issue 16).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.job import Job

# Imported by path by the worker, so the bench folder is not on sys.path: append it (at the
# end, so that the `pipeline` package is never shadowed by bench/pipeline.py).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from _pipeline_transform import count_next, enrich, positive  # noqa: E402

__all__ = ["job"]

_source = Job(
    os.environ.get("BENCH_PIPELINE_JOB", "bench-enrich"),
    guarantee=os.environ.get("BENCH_PIPELINE_GUARANTEE", "at-least-once"),  # type: ignore[arg-type]
    changelog=os.environ.get("BENCH_PIPELINE_CHANGELOG", "1") != "0",  # issue 16
).source(
    os.environ.get("BENCH_PIPELINE_SOURCE", "bench-in"),
    partitions=int(os.environ.get("BENCH_PIPELINE_PARTITIONS", "4")),
    value="json",
)
_sink = os.environ.get("BENCH_PIPELINE_SINK", "bench-out-paxline")

if os.environ.get("BENCH_PIPELINE_STATEFUL") == "1":
    job = (
        _source.filter(positive)
        .key_by(lambda e: e["user"])
        .aggregate({"n": 0}, count_next)
        .to_kafka(_sink, value="json")
    )
else:
    job = _source.filter(positive).map(enrich).to_kafka(_sink, value="json")
