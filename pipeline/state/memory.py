"""In-memory state store, for tests and for jobs that keep no durable state."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self, views: dict[str, dict[str, bytes]] | None = None, view: str = "") -> None:
        self.data: dict[str, bytes] = {}
        self.views = views if views is not None else {}
        self.view = view
        self._applied: int | None = None

    def get_many(self, keys: list[str]) -> dict[str, bytes | None]:
        return {k: self.data.get(k) for k in keys}

    def applied_offset(self) -> int | None:
        return self._applied

    def apply(
        self,
        writes: Mapping[str, bytes | None],
        view_writes: Mapping[str, bytes | None],
        end_offset: int,
    ) -> bool:
        if self._applied is not None and end_offset <= self._applied:
            return False
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v
        view = self.views.setdefault(self.view, {})
        for k, v in view_writes.items():
            if v is None:
                view.pop(k, None)
            else:
                view[k] = v
        self._applied = end_offset
        return True
