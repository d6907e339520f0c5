"""Payments per card in the 10 s before each payment: sliding windows (issue 18).

Input values are JSON objects ``{"card": str, "ts": epoch_ms, "amount": number}``. Each
payment at ``t`` ends a window ``[t - 10 s, t]`` (both inclusive) over its card's payments;
payments of a card at the same ``t`` share one window. It is emitted once the partition's
watermark passes ``t`` plus 1 s of allowed lateness, as ``{"key": card, "window_start": ms,
"window_end": ms, "value": {"n": payments, "total": amount}}``; an idle timer (1 s) emits the
last windows of a quiet partition on time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.job import Job, sliding

__all__ = ["LATENESS_MS", "SIZE_MS", "expected", "job"]

SIZE_MS = 10_000
LATENESS_MS = 1_000


def _add(acc: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    return {"n": acc["n"] + 1, "total": acc["total"] + p["amount"]}


job = (
    Job("sliding")
    .source("payments", partitions=4, value="json")
    .key_by(lambda p: p["card"])
    .window(sliding(seconds=10), allowed_lateness=1, timestamp=lambda p: p["ts"], idle_timeout=1)
    .aggregate({"n": 0, "total": 0}, _add)
    .to_kafka("payments-last-10s", value="json")
)


def expected(payments: Iterable[dict[str, Any]], *, idle: bool = True) -> list[dict[str, Any]]:
    """Emitted windows, for payments that arrive in this order on ONE partition.

    Mirrors the documented semantics: watermark = max ts so far; a payment whose own window
    is closed (watermark >= t + 1 + lateness) opens none; a window ending at ``t`` closes when
    the watermark reaches t + 1 + lateness and folds, in event-time order, every payment of
    its card with a time in [t - size, t] that arrived before it closed (and is not older than
    the watermark minus lateness minus size when it arrived: in no open window).
    """
    wm: int | None = None
    seen: dict[str, list[tuple[int, float]]] = {}  # card -> (ts, amount) in arrival order
    pending: set[tuple[int, str]] = set()
    out: list[dict[str, Any]] = []

    def close(upto: int | None) -> None:
        for t, card in sorted(pending):
            if upto is not None and t + 1 + LATENESS_MS > upto:
                continue
            pending.discard((t, card))
            inside = sorted((p for p in seen[card] if t - SIZE_MS <= p[0] <= t), key=lambda p: p[0])
            acc: dict[str, Any] = {"n": 0, "total": 0}
            for _, amount in inside:
                acc = _add(acc, {"amount": amount})
            out.append({"key": card, "window_start": t - SIZE_MS, "window_end": t, "value": acc})

    for p in payments:
        card, t = p["card"], p["ts"]
        if wm is not None and t < wm - LATENESS_MS - SIZE_MS:
            continue
        seen.setdefault(card, []).append((t, p["amount"]))
        if wm is None or wm < t + 1 + LATENESS_MS:
            pending.add((t, card))
        if wm is None or t > wm:
            wm = t
            close(wm)
    if idle:
        close(None)
    return out
