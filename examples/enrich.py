"""Stateless filter-and-enrich: keep events with a positive amount and add derived fields.

No ``key_by``, so there is a single stage and no state: records keep their Kafka key and
partition affinity, and the job is the baseline for the throughput benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.job import Job

__all__ = ["enrich", "expected", "job", "positive"]

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


job = (
    Job("enrich", guarantee="exactly-once")
    .source("events", partitions=4, value="json")
    .filter(positive)
    .map(enrich)
    .to_kafka("events-enriched", value="json")
)


def expected(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [enrich(e) for e in events if positive(e)]
