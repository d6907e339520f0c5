"""RabbitMQ faults as the worker sees them (issue 19; docs/architecture.md, sec. 6). Every one is
transient: the affected partition stalls with the reason shown by `paxline status` and in the
worker's metrics, and is taken over again once RabbitMQ answers; none ends the worker, since a
node that is down, a queue not declared yet or one that refuses messages (a full disk, a length
limit with reject-publish) is fixed on the RabbitMQ side while the worker keeps running.
Importing this module imports no RabbitMQ client."""

from __future__ import annotations

from pipeline.errors import TransientError

__all__ = ["RabbitQueueMissing", "RabbitRefused", "RabbitUnavailable"]


class RabbitUnavailable(TransientError):
    """The node did not answer: refused, reset, timed out, blocked by an alarm."""

    reason = "RabbitMQ unavailable"


class RabbitQueueMissing(TransientError):
    """The queue a job reads or writes does not exist (and the job may not declare it)."""

    reason = "RabbitMQ queue missing"


class RabbitRefused(TransientError):
    """The broker refused messages (a nack, or no queue took a ``mandatory`` message)."""

    reason = "RabbitMQ refused messages"
