"""Clicks per user in one-minute tumbling event-time windows, emitted to Kafka on close.

Input values are JSON objects ``{"user": str, "ts": epoch_ms, ...}``. A window
``[start, start + 60 s)`` is emitted once the partition's watermark (the largest ``ts`` seen)
reaches ``start + 60 s + 10 s`` of allowed lateness; clicks arriving after that are dropped
and counted as late. Each output has key = user and value
``{"key": user, "window_start": ms, "window_end": ms, "value": count}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.job import Job, tumbling

__all__ = ["LATENESS_MS", "WINDOW_MS", "expected", "job"]

WINDOW_MS = 60_000
LATENESS_MS = 10_000

job = (
    Job("clicks")
    .source("clicks", partitions=4, value="json")
    .key_by(lambda c: c["user"])
    .window(tumbling(seconds=60), allowed_lateness=10, timestamp=lambda c: c["ts"])
    .count()
    .to_kafka("clicks-per-user", value="json")
)


def expected(clicks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Closed windows, for clicks that arrive in this order on ONE partition.

    Mirrors the documented semantics literally: watermark = max ts so far; a click is late
    if its window already closed; windows close (ordered by start, then by first arrival of
    the user in the window) as soon as the watermark passes end + lateness.
    """
    open_windows: dict[int, dict[str, int]] = {}
    out: list[dict[str, Any]] = []
    watermark: int | None = None
    for click in clicks:
        ts, user = click["ts"], click["user"]
        start = ts - ts % WINDOW_MS
        if watermark is not None and watermark >= start + WINDOW_MS + LATENESS_MS:
            continue
        counts = open_windows.setdefault(start, {})
        counts[user] = counts.get(user, 0) + 1
        watermark = ts if watermark is None else max(watermark, ts)
        for s in sorted(open_windows):
            if watermark < s + WINDOW_MS + LATENESS_MS:
                break
            for u, n in open_windows.pop(s).items():
                out.append({"key": u, "window_start": s, "window_end": s + WINDOW_MS, "value": n})
    return out
