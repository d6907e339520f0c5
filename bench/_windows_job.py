"""The paxline jobs of ``bench/windows_vs_quix.py`` (names and topics from the environment,
set by the harness for the submit and the worker alike).

``BENCH_WQ_KIND=count``: ``key_by(user)``, a tumbling window over the value's ``ts``,
``count()``; ``join``: ``key_by(user).join_table(table, how="left", fn=merge)``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pipeline.job import Job, tumbling

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)  # at the end: bench/pipeline.py must not shadow the package

from _windows_transform import merge  # noqa: E402

__all__ = ["job"]

_env = os.environ
_partitions = int(_env.get("BENCH_WQ_PARTITIONS", "4"))
_keyed = (
    Job(_env.get("BENCH_WQ_JOB", "bench-wq"),
        guarantee=_env.get("BENCH_WQ_GUARANTEE", "at-least-once"))  # type: ignore[arg-type]
    .source(_env.get("BENCH_WQ_SOURCE", "bench-wq-in"), partitions=_partitions, value="json")
    .key_by(lambda o: o["user"])
)  # fmt: skip
if _env.get("BENCH_WQ_KIND", "count") == "count":
    job = (
        _keyed.window(
            tumbling(milliseconds=int(_env.get("BENCH_WQ_WINDOW_MS", "10000"))),
            allowed_lateness=int(_env.get("BENCH_WQ_GRACE_MS", "5000")) / 1000,
            timestamp=lambda o: o["ts"],
        )
        .count()
        .to_kafka(_env.get("BENCH_WQ_SINK", "bench-wq-out"), value="json")
    )
else:
    job = _keyed.join_table(
        _env.get("BENCH_WQ_TABLE", "bench-wq-table"), partitions=_partitions, how="left", fn=merge
    ).to_kafka(_env.get("BENCH_WQ_SINK", "bench-wq-out"), value="json")
