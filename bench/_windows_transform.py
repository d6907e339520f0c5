"""The input, the per-record functions and the expected outputs of ``bench/windows_vs_quix.py``.

Standalone on purpose (no paxline or Quix import): the paxline job, the Quix runner and the
harness all import it, so the two systems run the same functions on the same records.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["TIERS", "expected_joins", "expected_windows", "make_orders", "make_table", "merge"]

TIERS = ("bronze", "silver", "gold")


def merge(order: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """The join's output: the order's fields and its user's tier (None: no row; left join).
    Returns a new dict (Quix Streams forbids mutating its inputs)."""
    return {
        "id": order["id"],
        "user": order["user"],
        "amount": order["amount"],
        "tier": row["tier"] if row else None,
    }


def make_orders(
    records: int, users: list[str], base_ms: int, step_ms: int, seed: int
) -> Iterable[tuple[str, dict[str, Any]]]:
    """``records`` orders, key = user, event time ``base_ms + i * step_ms`` (increasing)."""
    rng = random.Random(seed)
    for i in range(records):
        user = users[rng.randrange(len(users))]
        yield (
            user,
            {
                "id": i,
                "user": user,
                "amount": round(rng.uniform(0.01, 999.99), 2),
                "ts": base_ms + i * step_ms,
            },
        )


def make_table(users: list[str], seed: int, missing: float = 0.1) -> dict[str, dict[str, Any]]:
    """One row per user except a ``missing`` share (left-join misses)."""
    rng = random.Random(seed + 1)
    return {
        u: {"user": u, "tier": TIERS[rng.randrange(len(TIERS))], "since": rng.randrange(2000, 2026)}
        for u in users
        if rng.random() >= missing
    }


def expected_windows(
    orders: Iterable[tuple[str, dict[str, Any]]],
    partition_of: Mapping[str, int],
    window_ms: int,
    grace_ms: int,
) -> dict[tuple[str, int], int]:
    """Tumbling-window counts per (user, window start) that both systems emit.

    Every partition holds its records in event-time order (one upstream partition per
    downstream one, see the harness), so nothing is late and the windows emitted are exactly
    those whose end + grace the partition's largest event time reaches: paxline closes a
    window when the watermark (max event time) >= end + allowed_lateness, Quix Streams
    (closing_strategy="partition") when max event time - grace >= end."""
    counts: dict[tuple[str, int], int] = {}
    high: dict[int, int] = {}
    for user, o in orders:
        start = o["ts"] - o["ts"] % window_ms
        counts[(user, start)] = counts.get((user, start), 0) + 1
        p = partition_of[user]
        high[p] = max(high.get(p, o["ts"]), o["ts"])
    return {
        (u, s): n
        for (u, s), n in counts.items()
        if s + window_ms <= high[partition_of[u]] - grace_ms
    }


def expected_joins(
    orders: Iterable[tuple[str, dict[str, Any]]], table: Mapping[str, dict[str, Any]]
) -> dict[int, str | None]:
    """Order id -> the tier it is joined with (the table is complete before any order)."""
    return {o["id"]: merge(o, table.get(u))["tier"] for u, o in orders}
