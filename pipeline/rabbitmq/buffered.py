"""What the stream reader and the queue reader share: RabbitMQ pushes deliveries to a client
thread, which buffers them per partition; the worker's main thread pauses, resumes and polls
those buffers the way it polls a Kafka consumer (`RecordSource`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from pipeline.executor.records import InRecord

__all__ = ["BufferedPartitions"]

TP = tuple[str, int]


class _Buffered(Protocol):
    @property
    def buf(self) -> deque[InRecord]: ...


class BufferedPartitions:
    """Pause, resume and poll over `_subs` (partition -> subscription with a `buf`), guarded
    by `_cond`, which the delivery thread notifies when it buffers a record."""

    topic: str
    assigned: set[TP]
    paused: set[TP]
    _subs: Mapping[int, _Buffered]
    _cond: threading.Condition
    _closing: bool

    def pause(self, partitions: list[TP]) -> None:
        self.paused.update(tp for tp in partitions if tp in self.assigned)

    def resume(self, partitions: list[TP]) -> None:
        self.paused.difference_update(partitions)

    def poll_batch(self, max_records: int, timeout: float) -> dict[TP, list[InRecord]]:
        """Up to `max_records` buffered records per partition, in delivery order; waits up
        to `timeout` for the first."""
        out: dict[TP, list[InRecord]] = {}
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for p, sub in self._subs.items():
                    if (self.topic, p) in self.paused or not sub.buf:
                        continue
                    n = min(max_records, len(sub.buf))
                    out[(self.topic, p)] = [sub.buf.popleft() for _ in range(n)]
                left = deadline - time.monotonic()
                if out or left <= 0 or self._closing:
                    break
                self._cond.wait(left)
        return out
