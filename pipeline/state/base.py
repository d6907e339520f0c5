"""The contract between the worker and a state store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PartitionStore", "StateKey"]


@dataclass(frozen=True, slots=True)
class StateKey:
    job: str
    topic: str
    partition: int


class PartitionStore(Protocol):
    """State of one partition. `apply` is atomic: the state writes, the view writes and the
    new applied offset become visible together, or (for a batch already applied) not at all.
    """

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        """Every key asked (None: absent), in the order asked."""
        ...

    def applied_offset(self) -> int | None:
        """Next offset whose effects are not yet in the store (Kafka convention)."""
        ...

    def apply(
        self,
        writes: Mapping[str, bytes | None],
        view_writes: Mapping[str, bytes | None],
        end_offset: int,
    ) -> bool:
        """Apply a batch ending just before `end_offset`; False if already applied."""
        ...
