"""RabbitMQ for jobs (issue 19): the ONLY package that imports the RabbitMQ clients (`rstream`
for streams, `pika` for AMQP queues), as `pipeline.kafka` is for confluent_kafka (import-linter
contract in pyproject.toml). docs/architecture.md, "RabbitMQ sources"."""
