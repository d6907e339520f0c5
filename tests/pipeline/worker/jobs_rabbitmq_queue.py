"""Jobs with a RabbitMQ queue source or a RabbitMQ sink (issue 19), submitted by path by
test_rabbitmq_queue_e2e.py. The AMQP URL comes from $PAXLINE_RABBITMQ_AMQP (the test sets it
for itself and for the workers it starts, a job is imported in both); the down-and-up test
points $PAXLINE_RABBITMQ_AMQP_PROXY at a fault proxy in front of the node."""

from __future__ import annotations

import os

from pipeline.job import Job

URL = os.environ.get("PAXLINE_RABBITMQ_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
PROXY = os.environ.get("PAXLINE_RABBITMQ_AMQP_PROXY", URL)

# Word count from Kafka into a RabbitMQ queue: each count update is one message, confirmed by
# RabbitMQ before the checkpoint covering its words is agreed.
sink_count = (
    Job("rmqsink", guarantee="at-least-once")
    .source("rmqsink-in", partitions=2, value="str")
    .flat_map(str.split)
    .key_by(lambda w: w)
    .count()
    .to_rabbitmq("rmqsink-counts", url=URL, declare="classic")
)

# A quorum queue into Kafka, one output per message: every message must arrive at least once.
queue_ids = (
    Job("rmqq", guarantee="at-least-once")
    .source_rabbitmq_queue("rmqq-in", url=URL, value="str")
    .map(str.upper)
    .to_kafka("rmqq-out", value="str")
)

# Queue in through the fault proxy (RabbitMQ "down" is the proxy resetting), queue out
# directly: the source alone must keep the partition stalled while RabbitMQ is away (the
# sink's publisher, opened in the takeover, would do it too and hide a flapping source).
through_proxy = (
    Job("rmqdown", guarantee="at-least-once")
    .source_rabbitmq_queue("rmqdown-in", url=PROXY, value="str")
    .map(str.upper)
    .to_rabbitmq("rmqdown-out", url=URL, value="str", declare=None)
)
