"""Jobs reading RabbitMQ streams (issue 19), submitted by path by test_rabbitmq_e2e.py. The
stream URL comes from $PAXLINE_RABBITMQ_STREAM, which the test sets for itself and for the
workers it starts (a job is imported in both)."""

from __future__ import annotations

import os

from pipeline.job import Job

URL = os.environ.get("PAXLINE_RABBITMQ_STREAM", "rabbitmq-stream://guest:guest@127.0.0.1:5552/")

# Word count from a two-partition super stream (streams rmqwc-text-0 and -1) into a Redis view,
# exactly-once. (It lost 2-12% of its counts in stage 1 until the de-duplication fix of
# 0f85a20: high-water marks matched by position through the exactly-once state overlay.)
wordcount = (
    Job("rmqwc", guarantee="exactly-once")
    .source_rabbitmq_stream("rmqwc-text", url=URL, partitions=2, value="str")
    .flat_map(str.split)
    .key_by(lambda w: w)
    .count()
    .to_redis("words")
)

# Exactly-once to Kafka, read from a two-partition stream; the worker is killed mid-stream.
# Two stages: the stream stage repartitions by key into a running count per key.
eos_kill = (
    Job("rmqeos", guarantee="exactly-once")
    .source_rabbitmq_stream("rmqeos-in", url=URL, partitions=2, value="str")
    .map(lambda v: v.upper())
    .key_by(lambda v: v.split(":")[0])
    .count()
    .to_kafka("rmqeos-out")
)
