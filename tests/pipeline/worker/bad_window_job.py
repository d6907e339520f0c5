"""A job whose window is invalid: importing it must fail with a message naming the problem."""

from pipeline.job import Job, tumbling

job = (
    Job("badwindow")
    .source("bw-in", partitions=1, value="json")
    .key_by(lambda e: e["k"])
    .window(tumbling(seconds=60), allowed_lateness=-5)
    .count()
    .to_kafka("bw-out")
)
