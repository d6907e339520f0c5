"""Exceptions raised by the coordinator package.

Errors that are *results* of commands (fencing, unknown job, ...) are values in the state
machine, not exceptions; this module only holds failures of the surrounding machinery.
"""

__all__ = ["CoordinatorError"]


class CoordinatorError(Exception):
    """Base class for every exception the coordinator package raises."""
