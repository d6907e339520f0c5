"""Whether the runtime saves a Ready on the event loop itself or in a thread.

A thread round trip costs two wake-ups, and under load each waits for the GIL (up to the 5 ms
switch interval) while the loop serves HTTP: on a busy node that is most of a commit's latency.
So small writes are saved inline while the disk proves fast, and a slow inline write sends the
next `probation` writes to a thread, so a slow or stalling disk never blocks the loop for long
twice in a row. Snapshots always go to a thread.

The policy before this one needed the last 64 saves *measured around the await* to be fast.
A save in a thread measured that way includes the two wake-ups and the GIL waits, so under
load it was never fast: one snapshot (always in a thread, and counted) latched every later save
into a thread for good. Found in the 1,000-worker scale runs (docs/benchmarks-coordinator.md,
"Scale"), where the leader saved ~30 Readys a second in a thread at ~6 ms each; this fix alone
did not measurably change those runs' latency. Now only inline saves are judged; after
`probation` thread saves the next small one is tried inline again.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SavePolicy"]


@dataclass
class SavePolicy:
    limit: float  # seconds; 0 = always a thread
    probation: int = 64
    thread_saves_left: int = 64  # a new node proves nothing yet

    def inline(self, snapshot: bool) -> bool:
        return self.limit > 0 and not snapshot and self.thread_saves_left <= 0

    def record(self, inline: bool, snapshot: bool, seconds: float) -> None:
        if inline:
            if seconds >= self.limit:
                self.thread_saves_left = self.probation
        elif not snapshot:
            self.thread_saves_left -= 1
