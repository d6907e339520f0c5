"""Exceptions raised by the pipeline package."""

__all__ = ["PipelineError"]


class PipelineError(Exception):
    """Base class for every exception the pipeline package raises."""
