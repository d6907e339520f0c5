"""Exceptions of the Paxos core.

Protocol outcomes (not leader, stale sequence number) are values in `ProposalResult` and
`ReadResult`; exceptions are reserved for misuse of the API and for undecodable frames.
"""

from __future__ import annotations

from coordinator.errors import CoordinatorError

__all__ = ["ConfigError", "DecodeError", "PaxosError"]


class PaxosError(CoordinatorError):
    """Base class for errors raised by `coordinator.paxos`."""


class ConfigError(PaxosError):
    """The node configuration cannot work (e.g. even cluster size, unknown node id)."""


class DecodeError(PaxosError):
    """A frame is not a well-formed encoding of a message; transports drop and count these."""
