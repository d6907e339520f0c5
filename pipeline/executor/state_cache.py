"""A stateful stage's view of its partition's state for one batch, with an undo journal.

State is read in as few round trips as possible (sorted keys, so a replay asks for the same
keys in the same order) and written back once, at the end of the batch, as the worker's
``state_writes``. Updates go through a journal so that a record whose processing fails can
be rolled back and leave no trace before it goes to the dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.codecs import decode_packed, encode_packed
from pipeline.errors import TransientError
from pipeline.executor.columns import describe
from pipeline.executor.records import StateAccess, StateAccessError, StateReadUnavailable

__all__ = ["ABSENT", "StateCache"]

ABSENT: Any = object()
"""The value of a key that has no state; putting it deletes the key."""

_POP: Any = object()  # journal marker: undo an append


class StateCache:
    __slots__ = ("dirty", "journal", "state", "vals")

    def __init__(self, state: StateAccess) -> None:
        self.state = state
        self.vals: dict[str, Any] = {}
        self.journal: list[tuple[str, Any]] = []
        self.dirty: set[str] = set()

    def load(self, keys: Iterable[str]) -> None:
        vals = self.vals
        missing = sorted({k for k in keys if k not in vals})
        if not missing:
            return
        try:
            got = self.state.get_many(missing)
            for k in missing:
                raw = got.get(k)
                vals[k] = ABSENT if raw is None else decode_packed(raw)
        except TransientError as exc:
            raise StateReadUnavailable(
                f"reading state failed: {describe(exc)}", exc.reason
            ) from exc
        except Exception as exc:
            raise StateAccessError(f"reading state failed: {describe(exc)}") from exc

    def get(self, key: str) -> Any:
        try:
            return self.vals[key]
        except KeyError:
            self.load((key,))
            return self.vals[key]

    def put(self, key: str, value: Any) -> None:
        self.journal.append((key, self.vals[key]))
        self.vals[key] = value
        self.dirty.add(key)

    def append(self, key: str, item: Any) -> None:
        """Append in place (journalled as one pop) instead of copying a growing list."""
        self.vals[key].append(item)
        self.journal.append((key, _POP))
        self.dirty.add(key)

    def rollback(self, mark: int) -> None:
        journal, vals = self.journal, self.vals
        while len(journal) > mark:
            key, prev = journal.pop()
            if prev is _POP:
                vals[key].pop()
            else:
                vals[key] = prev

    def writes(self) -> dict[str, bytes | None]:
        vals = self.vals
        out: dict[str, bytes | None] = {}
        for k in sorted(self.dirty):
            v = vals[k]
            out[k] = None if v is ABSENT else encode_packed(v)
        return out
