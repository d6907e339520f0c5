"""Per-batch scratch space: which records failed, and what the batch has produced so far.

It lives apart from the stage runner so that two batches never share it. Every step of a
stage carries ``orig``, the position in the batch of the input record each value came from,
so a failure anywhere is charged to the one input record that caused it.
"""

from __future__ import annotations

from typing import Any

from pipeline.executor.columns import describe
from pipeline.executor.records import DeadLetter, InRecord, OutRecord

__all__ = ["BatchRun", "prune"]


class BatchRun:
    __slots__ = ("dead", "failed", "late", "outputs", "records", "views")

    def __init__(self, records: list[InRecord]) -> None:
        self.records = records
        self.failed: set[int] = set()
        self.dead: list[DeadLetter] = []
        self.outputs: list[OutRecord] = []
        self.views: list[tuple[str, bytes | None]] = []
        self.late = 0

    def fail(self, origin: int, exc: BaseException, where: str, note: str = "") -> None:
        """Dead-letter input record ``origin``, once: its first failure is the one reported."""
        if origin in self.failed:
            return
        self.failed.add(origin)
        self.dead.append(DeadLetter(self.records[origin], describe(exc) + note, where))


def prune(run: BatchRun, orig: list[int], vals: list[Any]) -> tuple[list[int], list[Any]]:
    """Drop every value whose input record failed, including a flat_map's other outputs."""
    failed = run.failed
    keep = [k for k, o in enumerate(orig) if o not in failed]
    return [orig[k] for k in keep], [vals[k] for k in keep]
