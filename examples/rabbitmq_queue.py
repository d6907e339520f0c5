"""Orders from a RabbitMQ quorum queue, per-customer totals back into a RabbitMQ queue (issue 19):
``paxline submit examples/rabbitmq_queue.py:job``.

Both ends are at-least-once. The source acknowledges an order only after the checkpoint that
covers it is agreed by the coordinators, so a worker that dies redelivers its unacknowledged
orders to the next one; the sink publishes with confirms before that checkpoint, so a total is
never lost but may be published twice, and after a crash some orders may be counted twice
(read a RabbitMQ stream with ``source_rabbitmq_stream`` and end in Kafka or Redis for
exactly-once). The node is ``$PAXLINE_RABBITMQ_AMQP`` (default ``amqp://guest:guest@127.0.0.1:
5672/%2F``); set it for the CLI and the workers alike, they both import this file.

Feed it: ``python examples/rabbitmq_queue.py publish 1000`` declares the quorum queue
``orders`` and publishes 1000 orders with confirms; ``python examples/rabbitmq_queue.py
totals`` takes the totals out of ``customer-totals`` and prints the latest per customer.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable
from typing import Any

import orjson

from pipeline.job import Job

__all__ = ["CUSTOMERS", "URL", "expected", "job", "orders"]

URL = os.environ.get("PAXLINE_RABBITMQ_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
CUSTOMERS = ["ada", "bo", "cy", "di", "ed"]


def _add(total: dict[str, int], order: dict[str, Any]) -> dict[str, int]:
    return {"orders": total["orders"] + 1, "cents": total["cents"] + int(order["cents"])}


job = (
    Job("rabbitmq_orders", guarantee="at-least-once")
    .source_rabbitmq_queue("orders", url=URL, value="json")
    .filter(lambda o: int(o.get("cents", 0)) > 0)
    .key_by(lambda o: o["customer"])
    .aggregate(lambda: {"orders": 0, "cents": 0}, _add)
    .to_rabbitmq("customer-totals", url=URL, declare="quorum")
)


def orders(n: int, seed: int = 19) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": i, "customer": rng.choice(CUSTOMERS), "cents": rng.randrange(-100, 5000)}
            for i in range(n)]  # fmt: skip


def expected(items: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The latest total per customer after ``items`` (each order once)."""
    out: dict[str, dict[str, int]] = {}
    for o in items:
        if int(o["cents"]) > 0:
            t = out.get(o["customer"], {"orders": 0, "cents": 0})
            out[o["customer"]] = _add(t, o)
    return out


if __name__ == "__main__":
    from pipeline.rabbitmq.tools import drain_queue, publish_queue

    what = sys.argv[1] if len(sys.argv) > 1 else "publish"
    if what == "publish":
        n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
        sent = publish_queue(URL, "orders", (orjson.dumps(o) for o in orders(n)), "quorum")
        print(f"published {sent} orders to RabbitMQ queue 'orders'")
    elif what == "totals":
        latest: dict[str, Any] = {}
        for key, body in drain_queue(URL, "customer-totals"):
            latest[str(key)] = orjson.loads(body)
        for customer, total in sorted(latest.items()):
            print(f"{customer}: {total['orders']} orders, {total['cents'] / 100:.2f}")
    else:
        sys.exit("usage: python examples/rabbitmq_queue.py [publish N | totals]")
