"""Orders enriched with their customer: a stream-table join (issue 18).

``customers`` is a compacted topic: key = customer id, value = JSON row (a null value deletes
the customer). Each order ``{"customer": id, "amount": n, ...}`` on ``orders`` is joined with
the row its customer has at that point, as ``{"value": order, "table": row}`` keyed by the
customer id, on ``orders-enriched``; ``how="left"`` keeps orders of unknown customers with
``"table": null``. Exactly-once: the table state is part of the join stage's commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.job import Job

__all__ = ["expected", "job"]

job = (
    Job("orders", guarantee="exactly-once")
    .source("orders", partitions=4, value="json")
    .key_by(lambda o: o["customer"])
    .join_table("customers", partitions=2, how="left", value="json")
    .to_kafka("orders-enriched", value="json")
)


def expected(
    customers: Iterable[tuple[str, dict[str, Any] | None]], orders: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The join when every customer row is in before the orders come (rows in order)."""
    table: dict[str, Any] = {}
    for key, row in customers:
        if row is None:
            table.pop(key, None)
        else:
            table[key] = row
    return [{"value": o, "table": table.get(o["customer"])} for o in orders]
