"""Ad clicks joined with the ad view they came from: a windowed stream-stream join (issue 18).

``ad-clicks`` and ``ad-views`` carry JSON ``{"ad": id, "user": str, "ts": epoch_ms}``. A click
pairs with every view of the same ``(ad, user)`` whose time is at most 60 s apart from its own,
emitted once per pair when the second of the two arrives, as ``{"value": click, "table":
view}``; records more than 60 s + 30 s of grace behind the partition's watermark are late.
"""

from __future__ import annotations

from typing import Any

from pipeline.job import Job

__all__ = ["GRACE_MS", "WITHIN_MS", "job", "pair_key"]

WITHIN_MS = 60_000
GRACE_MS = 30_000


def pair_key(e: dict[str, Any]) -> str:
    return f"{e['ad']}/{e['user']}"


job = (
    Job("clickviews", guarantee="exactly-once")
    .source("ad-clicks", partitions=4, value="json")
    .key_by(pair_key)
    .join_stream(
        "ad-views", partitions=4, within=60, grace=30, key=pair_key, timestamp=lambda e: e["ts"]
    )
    .to_kafka("clicks-with-views", value="json")
)
