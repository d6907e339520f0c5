"""A job reading a topic whose name Kafka would refuse."""

from pipeline.job import Job

job = Job("badtopic").source("no spaces allowed", partitions=1).to_kafka("bt-out")
