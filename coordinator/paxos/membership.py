"""Replicated membership with an alpha window (docs/architecture.md, 2, "Reconfiguration").

The set of voting nodes is part of the replicated state. A membership command chosen at slot
`i` takes effect at slot `i + alpha`, so the configuration of every slot `s` is a function of
the chosen prefix up to `s - alpha` (Lamport, "Reconfiguring a State Machine", the R_alpha
construction). A leader never sends an Accept for a slot `s` before it has applied every slot
up to `s - alpha`, so it always knows the configuration it is counting votes in.

Membership commands are ordinary commands whose payload starts with `RECONFIG_PREFIX`; the
session machine hands them here instead of to the application. Each command is idempotent
on the membership (adding a member, or removing a non-member, changes nothing) and a node id
is never admitted twice, so a candidate can replay membership commands from merged promises
without the session table and reach the same configuration the log will reach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from coordinator.paxos.errors import PaxosError

__all__ = [
    "RECONFIG_PREFIX",
    "Membership",
    "add_node_command",
    "is_reconfig",
    "majority",
    "phase1_quorum",
    "remove_node_command",
    "replace_node_command",
]

RECONFIG_PREFIX = b"\x00paxos.reconfig\x00"
MAX_MEMBERS = 9


def majority(members: tuple[int, ...]) -> int:
    return len(members) // 2 + 1


def phase1_quorum(members: tuple[int, ...]) -> int:
    """How many promises of `members` complete phase 1: the fewest that meet every majority
    (Flexible Paxos: phase-1 and phase-2 quorums need only intersect each other). Equal to the
    majority for an odd size; one less for an even size, so that in a configuration of two
    either member can recover alone (each holds everything the two chose) while the other's
    disk is being replaced (docs/architecture.md, 2, "Reconfiguration")."""
    return len(members) - majority(members) + 1


def add_node_command(node_id: int, address: str) -> bytes:
    """Payload of a command that makes `node_id` (reachable at `address`, host:port of its
    peer listener) a voting member `alpha` slots after it is chosen."""
    body = {"op": "add", "id": node_id, "addr": address}
    return RECONFIG_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def remove_node_command(node_id: int) -> bytes:
    body = {"op": "remove", "id": node_id}
    return RECONFIG_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def replace_node_command(old: int, new: int, address: str) -> bytes:
    """One change that swaps member `old` for the new node `new` (a dead node for one with an
    empty disk), keeping the size. The two configurations may share no majority; the alpha
    window and phase 1 over every spanned configuration make that safe."""
    body = {"op": "replace", "id": old, "new": new, "addr": address}
    return RECONFIG_PREFIX + json.dumps(body, separators=(",", ":")).encode()


def is_reconfig(payload: bytes) -> bool:
    return payload.startswith(RECONFIG_PREFIX)


def _result(ok: bool, detail: str, **extra: object) -> bytes:
    body: dict[str, object] = {"ok": ok, "detail": detail, **extra}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(slots=True)
class Membership:
    """`configs` lists `(effective_slot, members)` in increasing slot order; the configuration
    of slot `s` is the last entry whose effective slot is at or below `s`. Entries no slot can
    need any more are pruned as slots are applied."""

    alpha: int
    configs: list[tuple[int, tuple[int, ...]]]
    addresses: dict[int, str] = field(default_factory=dict)
    ever: set[int] = field(default_factory=set)

    @classmethod
    def initial(cls, members: tuple[int, ...], alpha: int) -> Membership:
        m = tuple(sorted(members))
        return cls(alpha, [(1, m)], {}, set(m))

    def copy(self) -> Membership:
        return Membership(self.alpha, list(self.configs), dict(self.addresses), set(self.ever))

    # ---------------------------------------------------------------------------- queries
    def at(self, slot: int) -> tuple[int, ...]:
        found = self.configs[0][1]
        for eff, members in self.configs:
            if eff > slot:
                break
            found = members
        return found

    def latest(self) -> tuple[int, ...]:
        return self.configs[-1][1]

    def last_effective(self) -> int:
        return self.configs[-1][0]

    def between(self, lo: int, hi: int) -> list[tuple[int, ...]]:
        """Every distinct configuration of a slot in [lo, hi]."""
        out = [self.at(lo)]
        for eff, members in self.configs:
            if lo < eff <= hi and members not in out:
                out.append(members)
        return out

    def known(self) -> set[int]:
        """Every node some current or pending configuration counts."""
        return {n for _, members in self.configs for n in members}

    # ---------------------------------------------------------------------------- changes
    def apply(self, slot: int, payload: bytes) -> bytes:
        """Apply the membership command chosen at `slot`. Errors are results."""
        try:
            body = json.loads(payload[len(RECONFIG_PREFIX) :])
            op = str(body["op"])
            node = int(body["id"])
        except (ValueError, KeyError, TypeError):
            return _result(False, "malformed membership command")
        cur = self.latest()
        if op in ("add", "replace"):
            added = node if op == "add" else body.get("new")
            if not isinstance(added, int):
                return _result(False, "replace needs the new node's id")
            if added in cur:
                return _result(True, "already a member", members=list(cur))
            if added in self.ever or added < 1:
                return _result(False, f"node id {added} was a member before; use a new id")
            if op == "replace" and node not in cur:
                return _result(False, f"node {node} is not a member")
            if op == "add" and len(cur) >= MAX_MEMBERS:
                return _result(False, f"at most {MAX_MEMBERS} members")
            addr = body.get("addr")
            if not isinstance(addr, str) or not addr:
                return _result(False, f"{op} needs an address")
            kept = cur if op == "add" else tuple(n for n in cur if n != node)
            new = tuple(sorted((*kept, added)))
            self.addresses[added] = addr
            self.ever.add(added)
        elif op == "remove":
            if node not in cur:
                return _result(True, "not a member", members=list(cur))
            if len(cur) <= 1:
                return _result(False, "cannot remove the last member")
            new = tuple(n for n in cur if n != node)
        else:
            return _result(False, f"unknown membership op {op!r}")
        eff = slot + self.alpha
        self.configs.append((eff, new))
        return _result(True, "chosen", members=list(new), effective_slot=eff)

    def prune(self, applied: int) -> None:
        """Drop configurations no slot above `applied` uses, and addresses of nodes that no
        remaining configuration counts."""
        while len(self.configs) > 1 and self.configs[1][0] <= applied + 1:
            del self.configs[0]
        known = self.known()
        for node in [n for n in self.addresses if n not in known]:
            del self.addresses[node]

    # --------------------------------------------------------------------------- snapshot
    def to_json(self) -> object:
        return {
            "alpha": self.alpha,
            "configs": [[eff, list(m)] for eff, m in self.configs],
            "addresses": {str(k): v for k, v in sorted(self.addresses.items())},
            "ever": sorted(self.ever),
        }

    @classmethod
    def from_json(cls, obj: object) -> Membership:
        try:
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            configs = [(int(eff), tuple(int(n) for n in m)) for eff, m in obj["configs"]]
            if not configs:
                raise ValueError("no configuration")
            return cls(
                int(obj["alpha"]),
                configs,
                {int(k): str(v) for k, v in obj["addresses"].items()},
                {int(n) for n in obj["ever"]},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise PaxosError(f"corrupt membership in snapshot: {exc}") from exc
