"""Exceptions raised by the pipeline package."""

__all__ = ["PipelineError", "ServiceError"]


class PipelineError(Exception):
    """Base class for every exception the pipeline package raises."""


class ServiceError(PipelineError):
    """A local service (Kafka, Redis) could not be fetched, started or reached."""
