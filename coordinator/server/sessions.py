"""Worker sessions: soft state on the leader, never in the log.

Heartbeats arrive every second or so from every worker; logging each would flood Paxos. So
only the leader tracks them, and after a leader change every known worker gets one full
session timeout of grace (the new leader has not heard from anyone yet).
"""

from __future__ import annotations

__all__ = ["WorkerSessions"]


class WorkerSessions:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last_seen: dict[str, float] = {}

    def touch(self, worker_id: str, now: float) -> None:
        self._last_seen[worker_id] = now

    def grant_grace(self, now: float) -> None:
        """Called on becoming leader: nobody has had a chance to heartbeat us yet."""
        for worker_id in self._last_seen:
            self._last_seen[worker_id] = now

    def lapsed(self, registered: dict[str, int], now: float) -> list[tuple[str, int]]:
        """Registered workers (id -> registration id) whose session ran out. A registered
        worker this leader never heard from starts its clock now."""
        out = []
        for worker_id, registered_at in sorted(registered.items()):
            seen = self._last_seen.setdefault(worker_id, now)
            if now - seen > self.timeout:
                out.append((worker_id, registered_at))
        for gone in set(self._last_seen) - set(registered):
            del self._last_seen[gone]
        return out

    def forget(self, worker_id: str) -> None:
        self._last_seen.pop(worker_id, None)
