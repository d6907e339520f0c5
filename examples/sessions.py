"""Page views per user session: session windows with an idle timer (issue 18).

Input values are JSON objects ``{"user": str, "ts": epoch_ms, ...}``. A user's views less than
10 s apart (event time) form one session ``[first, last + 10 s)``; it is emitted once the
partition's watermark passes its end plus 2 s of allowed lateness. With ``idle_timeout=1``, a
partition that has had no record for a second lets its watermark follow the wall clock, so the
last session of a quiet partition is emitted about 12 s after its last view instead of when
the next view arrives. Each output has key = user and value
``{"key": user, "window_start": ms, "window_end": ms, "value": views}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.job import Job, session

__all__ = ["GAP_MS", "LATENESS_MS", "expected", "job"]

GAP_MS = 10_000
LATENESS_MS = 2_000

job = (
    Job("sessions")
    .source("page-views", partitions=4, value="json")
    .key_by(lambda v: v["user"])
    .window(session(gap=10), allowed_lateness=2, timestamp=lambda v: v["ts"], idle_timeout=1)
    .count()
    .to_kafka("sessions-per-user", value="json")
)


def expected(views: Iterable[dict[str, Any]], *, idle: bool = True) -> list[dict[str, Any]]:
    """Emitted sessions, for views that arrive in this order on ONE partition.

    Mirrors the documented semantics literally: watermark = max ts so far; a view joins every
    open session of its user it is less than a gap away from (merging them); a view that joins
    none and whose own session would already be closed is late and dropped; sessions close
    when the watermark reaches end + lateness. ``idle``: the idle timer eventually closes
    every session still open once the input stops.
    """
    wm: int | None = None
    sessions: dict[str, list[list[int]]] = {}  # user -> [[first, last, count], ...]
    out: list[dict[str, Any]] = []

    def close(upto: int | None) -> None:
        due = sorted(
            (s[1] + GAP_MS, user, s)
            for user, ss in sessions.items()
            for s in ss
            if upto is None or s[1] + GAP_MS + LATENESS_MS <= upto
        )
        for end, user, s in due:
            sessions[user].remove(s)
            out.append({"key": user, "window_start": s[0], "window_end": end, "value": s[2]})

    for v in views:
        user, t = v["user"], v["ts"]
        ss = sessions.setdefault(user, [])
        touching = [s for s in ss if s[0] - GAP_MS < t < s[1] + GAP_MS]
        if not touching and wm is not None and wm >= t + GAP_MS + LATENESS_MS:
            continue  # late
        merged = [
            min([t] + [s[0] for s in touching]),
            max([t] + [s[1] for s in touching]),
            1 + sum(s[2] for s in touching),
        ]
        ss[:] = sorted([s for s in ss if s not in touching] + [merged])
        if wm is None or t > wm:
            wm = t
            close(wm)
    if idle:
        close(None)
    return out
