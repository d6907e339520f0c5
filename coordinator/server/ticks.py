"""How many Paxos ticks a node counts when its event loop wakes: Go `time.Ticker` semantics.

The old ticker counted every tick interval of wall time, so a node whose loop had not run for
600 ms (the process starved of CPU on a busy host, or a long apply) counted 24 ticks at once on
waking, *before* it had read the peer frames that arrived meanwhile (they sit in the socket
until the reader tasks run): a follower then timed out on a leader that was heartbeating all
along, and a leader failed its own check-quorum on acks it had not yet read. On the 2-core
machine with 1,000 played workers every measured window lost its leader that way
(docs/benchmarks-coordinator.md, "Scale").

A stall therefore counts as one tick, as etcd's raft node does with Go's ticker (which drops
ticks for a slow receiver): election timeouts measure time the node was able to run, not wall
time. Liveness only: no safety property depends on ticks (no leases; reads go through a quorum
round). A node that really died is still noticed at once through its closed links
(`Node.peer_lost`), and a silent one after an election timeout of loop time.
docs/architecture.md, 2, "Driver: ticks of loop time, bounded applies".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TickClock", "tick_forever"]


@dataclass
class TickClock:
    """Pure: fed the loop's clock, answers how many ticks are due and when to wake next."""

    interval: float
    next_at: float
    dropped: int = 0  # ticks not counted because the loop was late (a metric)
    late_max: float = 0.0  # the longest lateness seen, seconds (a metric)

    def due(self, now: float) -> int:
        """Ticks to count at `now`: 0 before the next one is due, else 1. A wake-up more than
        one interval late drops the ticks it missed and starts the schedule again from `now`."""
        if now < self.next_at:
            return 0
        late = now - self.next_at
        if late >= self.interval:
            missed = int(late / self.interval)
            self.dropped += missed
            self.late_max = max(self.late_max, late)
            self.next_at = now + self.interval
        else:
            self.next_at += self.interval
        return 1


async def tick_forever(clock: TickClock, on_tick: Callable[[], None]) -> None:
    """Call `on_tick` once per due tick of `clock`, on the running loop's clock."""
    loop = asyncio.get_running_loop()
    clock.next_at = loop.time() + clock.interval
    while True:
        await asyncio.sleep(max(0.0, clock.next_at - loop.time()))
        if clock.due(loop.time()):
            on_tick()
