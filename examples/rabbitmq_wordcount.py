"""Word count from a RabbitMQ stream into a Redis view (issue 19):
``paxline submit examples/rabbitmq_wordcount.py:job``.

The job reads the stream ``text`` (the ``rabbitmq_stream`` plugin; port 5552 by default) at
``$PAXLINE_RABBITMQ_STREAM`` - set it for the CLI and the workers alike, they both import this
file. The stream's offsets are agreed through Paxos like a Kafka topic's (the checkpoint, not
RabbitMQ, says where to resume), so the job keeps its guarantee; exactly-once works the same.

Feed it: ``python examples/rabbitmq_wordcount.py examples/data/sample.txt`` appends each line
of the file to the stream (created if missing) with publisher confirms. The counts are the
Redis hash ``paxline:{rabbitmq_wordcount}:view:words``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pipeline.job import Job

__all__ = ["STREAM", "URL", "expected", "job"]

URL = os.environ.get("PAXLINE_RABBITMQ_STREAM", "rabbitmq-stream://guest:guest@127.0.0.1:5552/")
STREAM = "text"

job = (
    Job("rabbitmq_wordcount", guarantee="at-least-once")
    .source_rabbitmq_stream(STREAM, url=URL, value="str")
    .flat_map(str.split)
    .filter(str.isalpha)
    .map(str.lower)
    .key_by(lambda w: w)
    .count()
    .to_redis("words")
)


def expected(lines: Iterable[str]) -> dict[str, int]:
    """The view after consuming ``lines``: word -> count."""
    return dict(Counter(w.lower() for line in lines for w in line.split() if w.isalpha()))


if __name__ == "__main__":
    from pipeline.rabbitmq.streams import publish

    lines = Path(sys.argv[1]).read_text().splitlines() if len(sys.argv) > 1 else sys.stdin
    values = [line.encode() for line in lines]
    publish(URL, STREAM, values)
    print(f"published {len(values)} lines to RabbitMQ stream {STREAM!r}")
