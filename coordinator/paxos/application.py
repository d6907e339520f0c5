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
from coordinator.paxos.membership import Membership, is_reconfig
from coordinator.paxos.types import Batch, Command

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
    remembering only its latest seq and result is enough. Membership commands go to the
    replicated `membership` instead of the application (docs/architecture.md, 2)."""

    __slots__ = ("app", "membership", "sessions")

    def __init__(self, app: StateMachine, membership: Membership | None = None) -> None:
        self.app = app
        self.sessions: dict[str, tuple[int, bytes]] = {}
        self.membership = membership if membership is not None else Membership.initial((), 1)

    def apply(self, cmd: Command, slot: int = 0) -> Applied:
        last = self.sessions.get(cmd.client_id)
        if last is not None and cmd.seq <= last[0]:
            if cmd.seq == last[0]:
                return Applied(cmd, last[1], duplicate=True, stale=False)
            return Applied(cmd, b"", duplicate=True, stale=True)
        if is_reconfig(cmd.payload):
            result = self.membership.apply(slot, cmd.payload)
        else:
            result = self.app.apply(cmd.payload)
        self.sessions[cmd.client_id] = (cmd.seq, result)
        return Applied(cmd, result, duplicate=False, stale=False)

    def speculate_membership(self, batches: list[tuple[int, Batch]]) -> Membership:
        """The membership after applying `batches` (consecutive slots from `applied + 1`,
        in order) on top of the current state, without changing anything: what a candidate
        needs to know which configurations the slots it recovers are chosen in. It runs the
        session check exactly as `apply` would, so it reaches exactly the membership the log
        will reach if those values are chosen."""
        spec = self.membership.copy()
        seqs: dict[str, int] = {}
        for slot, batch in batches:
            for cmd in batch.commands:
                last = seqs.get(cmd.client_id)
                if last is None:
                    known = self.sessions.get(cmd.client_id)
                    last = known[0] if known is not None else None
                if last is not None and cmd.seq <= last:
                    continue
                seqs[cmd.client_id] = cmd.seq
                if is_reconfig(cmd.payload):
                    spec.apply(slot, cmd.payload)
        return spec

    def snapshot(self) -> bytes:
        sessions = [
            [cid, seq, base64.b64encode(res).decode("ascii")]
            for cid, (seq, res) in sorted(self.sessions.items())
        ]
        app = base64.b64encode(self.app.snapshot()).decode("ascii")
        body = {"sessions": sessions, "app": app, "membership": self.membership.to_json()}
        return json.dumps(body, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        try:
            obj = json.loads(data)
            sessions = {
                str(cid): (int(seq), base64.b64decode(res)) for cid, seq, res in obj["sessions"]
            }
            app = base64.b64decode(obj["app"])
            raw_members = obj.get("membership")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PaxosError(f"corrupt snapshot: {exc}") from exc
        # A snapshot from before reconfiguration existed has no membership: the founding
        # configuration the node was started with is still the cluster's.
        if raw_members is not None:
            self.membership = Membership.from_json(raw_members)
        self.app.restore(app)
        self.sessions = sessions
