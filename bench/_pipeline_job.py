"""The paxline job of ``bench/pipeline.py``: the shape of ``examples/enrich.py`` on bench topics.

Topic and job names come from the environment (set by the benchmark for the submit and the
worker alike, so both resolve the same job): ``BENCH_PIPELINE_JOB``, ``BENCH_PIPELINE_SOURCE``,
``BENCH_PIPELINE_SINK``, ``BENCH_PIPELINE_PARTITIONS``.
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

from _pipeline_transform import enrich, positive  # noqa: E402

__all__ = ["job"]

job = (
    Job(
        os.environ.get("BENCH_PIPELINE_JOB", "bench-enrich"),
        guarantee=os.environ.get("BENCH_PIPELINE_GUARANTEE", "at-least-once"),  # type: ignore[arg-type]
    )
    .source(
        os.environ.get("BENCH_PIPELINE_SOURCE", "bench-in"),
        partitions=int(os.environ.get("BENCH_PIPELINE_PARTITIONS", "4")),
        value="json",
    )
    .filter(positive)
    .map(enrich)
    .to_kafka(os.environ.get("BENCH_PIPELINE_SINK", "bench-out-paxline"), value="json")
)
