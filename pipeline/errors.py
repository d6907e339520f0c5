"""Exceptions raised by the pipeline package.

Two families matter to the worker (docs/architecture.md, sec. 6): a `TransientError` means a
dependency is unreachable or refused for now, so the affected partitions stall and are taken
over again once it answers; every other `PipelineError` is bad configuration or a bug, and
ends the process with one CRITICAL line."""

__all__ = [
    "CoordinatorsUnavailable",
    "KafkaUnavailable",
    "PipelineError",
    "StateUnavailable",
    "TransientError",
]


class PipelineError(Exception):
    """Base class for every exception the pipeline package raises."""


class TransientError(PipelineError):
    """A dependency did not answer or refused for now (unreachable, timing out, loading, read
    only, no leader, an aborted transaction). Retrying later is right; exiting never is.
    `reason` is the short text `paxline status` shows ("Redis unreachable")."""

    reason = "dependency unavailable"


class StateUnavailable(TransientError):
    """Redis is unreachable, timing out, LOADING, READONLY or otherwise not serving."""

    reason = "Redis unreachable"


class KafkaUnavailable(TransientError):
    """A Kafka request, delivery or transaction failed for a reason that may pass: broker
    down, leader moving, NOT_ENOUGH_REPLICAS, request or transaction timeouts, an abort."""

    reason = "Kafka unavailable"


class CoordinatorsUnavailable(TransientError):
    """No coordinator answered (no quorum, no leader yet, all unreachable)."""

    reason = "coordinators unavailable"
