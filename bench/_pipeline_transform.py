"""The one transformation every system in ``bench/pipeline.py`` runs, and the input it runs on.

Same logic as ``examples/enrich.py`` (keep events with a positive amount, add derived fields),
kept here so that the benchmark does not move when the example does. The enriched record keeps
every input field, ``id`` included, so the verifier can find lost and duplicated outputs.

Standalone on purpose (no paxline import): the raw loop and the peers import it too.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["CENTS", "count_next", "count_state", "enrich", "make_input", "positive"]

CENTS = 100


def positive(event: dict[str, Any]) -> bool:
    amount = event.get("amount")
    return isinstance(amount, int | float) and amount > 0


def enrich(event: dict[str, Any]) -> dict[str, Any]:
    return {
        **event,
        "amount_cents": round(event["amount"] * CENTS),
        "large": event["amount"] >= 1000,
    }


def count_next(acc: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The stateful job: a running count per user; the output keeps the input's id (for the
    verifier) and carries the count."""
    return {"id": event["id"], "user": event["user"], "n": acc["n"] + 1}


def count_state(event: dict[str, Any], state: Any) -> dict[str, Any]:
    """`count_next` on Quix Streams' per-key state."""
    out = count_next({"n": state.get("n", 0)}, event)
    state.set("n", out["n"])
    return out


_KINDS = ("click", "view", "purchase", "refund")
_COUNTRIES = ("DE", "FR", "NL", "PL", "ES", "IT")


def make_input(i: int, rng: random.Random) -> tuple[bytes, dict[str, Any]]:
    """Record ``i``: key ``user-N`` and a ~100-byte JSON value; about 10% have a non-positive
    amount (dropped by the filter), about 5% are large (>= 1000)."""
    user = rng.randrange(20_000)
    roll = rng.random()
    if roll < 0.10:
        amount = -round(rng.uniform(0, 500), 2)
    elif roll < 0.15:
        amount = round(rng.uniform(1000, 5000), 2)
    else:
        amount = round(rng.uniform(0.01, 999.99), 2)
    value = {
        "id": i,
        "user": f"u{user:05d}",
        "kind": _KINDS[i % len(_KINDS)],
        "amount": amount,
        "country": _COUNTRIES[user % len(_COUNTRIES)],
        "ts": 1_700_000_000_000 + i * 7,
    }
    return f"user-{user}".encode(), value
