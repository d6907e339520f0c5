"""The job the dashboard test submits (`tests/coordinator/server/dashboard/dash_job.py:job`):
counts per value on its own topic, so it never shares input with the other end-to-end modules."""

from __future__ import annotations

from pipeline.job import Job

job = (
    Job("dashcount")
    .source("dash-in", partitions=2, value="str")
    .key_by(lambda v: v)
    .count()
    .to_redis("counts")
)
