"""Payments to parquet files, exactly once (issue 18): the file sink.

Input values are JSON objects ``{"user": str, "amount": int}``. Refunds (amount <= 0) are
dropped, each payment gains its amount in cents, and the stream is written to hourly
partitioned parquet files under ``PAXLINE_FILES_URL`` (default ``./paxline-files``; a
``webhdfs://namenode:port/path`` URL writes to HDFS). A file appears (is renamed from
``_tmp/``) only once the checkpoint covering its records is agreed, so a reader never sees a
record twice or a record that a crash will replay: read the directory with
``pyarrow.dataset.dataset(url, format="parquet")`` (it skips ``_tmp``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pipeline.job import Job

__all__ = ["URL", "expected", "job"]

URL = os.environ.get("PAXLINE_FILES_URL", "paxline-files")

job = (
    Job("payfiles", guarantee="exactly-once")
    .source("payments", partitions=4, value="json")
    .filter(lambda p: p["amount"] > 0)
    .map(lambda p: {**p, "cents": p["amount"] * 100})
    .to_files(URL, format="parquet", roll="hour", max_records=2000)
)


def expected(payments: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the files hold, in any order: the same computation in plain Python."""
    return [{**p, "cents": p["amount"] * 100} for p in payments if p["amount"] > 0]
