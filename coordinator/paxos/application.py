"""The application state machine seen by the core, wrapped with client sessions.

Sessions live here, inside the replicated state, because "apply at most once and answer a retry
with the first result" must give the same answer on every replica and survive snapshots.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Protocol

from coordinator.paxos.errors import PaxosError
from coordinator.paxos.types import Command

__all__ = ["Applied", "SessionMachine", "StateMachine"]


class StateMachine(Protocol):
    """A deterministic application. `apply` must depend only on the state and the bytes (no
    clocks, no randomness), or replicas diverge. `query` is read-only and serves linearizable
    reads once the core has confirmed leadership."""

    def apply(self, command: bytes) -> bytes: ...

    def query(self, query: bytes) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Applied:
    command: Command
    result: bytes
    duplicate: bool
    stale: bool


class SessionMachine:
    """Deduplicates by `(client_id, seq)`: a client has at most one outstanding command, so
    remembering only its latest seq and result is enough."""

    __slots__ = ("app", "sessions")

    def __init__(self, app: StateMachine) -> None:
        self.app = app
        self.sessions: dict[str, tuple[int, bytes]] = {}

    def apply(self, cmd: Command) -> Applied:
        last = self.sessions.get(cmd.client_id)
        if last is not None and cmd.seq <= last[0]:
            if cmd.seq == last[0]:
                return Applied(cmd, last[1], duplicate=True, stale=False)
            return Applied(cmd, b"", duplicate=True, stale=True)
        result = self.app.apply(cmd.payload)
        self.sessions[cmd.client_id] = (cmd.seq, result)
        return Applied(cmd, result, duplicate=False, stale=False)

    def snapshot(self) -> bytes:
        sessions = [
            [cid, seq, base64.b64encode(res).decode("ascii")]
            for cid, (seq, res) in sorted(self.sessions.items())
        ]
        app = base64.b64encode(self.app.snapshot()).decode("ascii")
        return json.dumps({"sessions": sessions, "app": app}, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        try:
            obj = json.loads(data)
            sessions = {
                str(cid): (int(seq), base64.b64decode(res)) for cid, seq, res in obj["sessions"]
            }
            app = base64.b64decode(obj["app"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PaxosError(f"corrupt snapshot: {exc}") from exc
        self.app.restore(app)
        self.sessions = sessions
