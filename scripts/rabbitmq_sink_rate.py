"""RabbitMQ sink throughput, pipelined confirms vs one confirm per message (issue 19).

``.venv/bin/python scripts/rabbitmq_sink_rate.py [messages]`` starts a private node (as
scripts/rabbitmq does) in a temporary directory, publishes through `QueueSink` both ways into
a classic and a quorum queue (batches of 500, 100-byte bodies) and prints messages/s."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from paxline.localstack import rabbitmq
from pipeline.rabbitmq.sink import Outgoing, QueueSink


def main(n: int) -> None:
    d = Path(tempfile.mkdtemp(prefix="paxline-rate-"))
    node = rabbitmq.start(d)
    try:
        for kind in ("classic", "quorum"):
            for pipelined in (True, False):
                sink = QueueSink(node.amqp_url, pipelined=pipelined)
                queue = f"rate-{kind}-{pipelined}"
                sink.ensure_queue(queue, kind)
                batch = [Outgoing(queue, b"x" * 100, b"k") for _ in range(500)]
                t = time.perf_counter()
                for _ in range(n // 500):
                    sink.send_all(batch)
                rate = n / (time.perf_counter() - t)
                sink.close()
                how = "pipelined" if pipelined else "per-message"
                print(f"{kind:8s} {how:12s} {rate:9.0f} msg/s ({n} messages)")
    finally:
        rabbitmq.stop(d)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
