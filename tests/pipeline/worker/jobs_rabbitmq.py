"""Jobs reading RabbitMQ streams (issue 19), submitted by path by test_rabbitmq_e2e.py. The
stream URL comes from $PAXLINE_RABBITMQ_STREAM, which the test sets for itself and for the
workers it starts (a job is imported in both)."""

from __future__ import annotations

import os

from pipeline.job import Job

URL = os.environ.get("PAXLINE_RABBITMQ_STREAM", "rabbitmq-stream://guest:guest@127.0.0.1:5552/")

# Word count from a two-partition super stream (streams rmqwc-text-0 and -1) into a Redis view.
# At-least-once: the same job exactly-once loses counts when its input trickles in, from a
# Kafka source just as well (a worker bug outside the RabbitMQ source, reported to 13c).
wordcount = (
    Job("rmqwc", guarantee="at-least-once")
    .source_rabbitmq_stream("rmqwc-text", url=URL, partitions=2, value="str")
    .flat_map(str.split)
    .key_by(lambda w: w)
    .count()
    .to_redis("words")
)

# Exactly-once to Kafka, read from a two-partition stream; the worker is killed mid-stream.
# One stage: a key_by -> count stage behind it loses counts under exactly-once when input
# trickles in, from a Kafka source as well (a worker bug outside the RabbitMQ source).
eos_kill = (
    Job("rmqeos", guarantee="exactly-once")
    .source_rabbitmq_stream("rmqeos-in", url=URL, partitions=2, value="str")
    .map(lambda v: v.upper())
    .to_kafka("rmqeos-out")
)
