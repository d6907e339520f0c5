"""Produce the lines of a text file to a Kafka topic, to feed the examples.

In the compose deployment (the image ships examples/):

    docker compose run --rm --entrypoint python cli examples/produce.py text \\
        examples/data/sample.txt --repeat 200

Each line is one record, keyed by its number so that the lines spread over every partition.
The broker comes from --kafka, else $PAXLINE_KAFKA (compose sets it to kafka:9092).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from confluent_kafka import Producer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="examples/produce.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topic")
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="produce the file N times")
    parser.add_argument("--kafka", default=os.environ.get("PAXLINE_KAFKA", "127.0.0.1:9092"))
    args = parser.parse_args(argv)
    lines = args.file.read_text().splitlines()
    producer = Producer({"bootstrap.servers": args.kafka, "linger.ms": 5, "acks": "all"})
    failed: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    n = 0
    for _ in range(args.repeat):
        for line in lines:
            producer.produce(args.topic, line.encode(), key=str(n).encode(), on_delivery=report)
            n += 1
            producer.poll(0)
    left = producer.flush(60)
    if left or failed:
        print(f"error: {left} undelivered, {len(failed)} failed: {failed[:3]}", file=sys.stderr)
        return 1
    print(f"produced {n} lines of {args.file} to {args.topic!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
