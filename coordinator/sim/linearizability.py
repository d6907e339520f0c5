"""A Wing & Gong / Lowe style linearizability checker for single-key register histories.

Linearizability is local (Herlihy & Wing), so the caller checks each key's history separately,
which keeps every search small. The search memoises (set of linearized ops, register value):
reaching the same pair twice cannot lead anywhere new.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.sim.kv import kv_step

__all__ = ["HistOp", "check_key"]

INF = float("inf")


@dataclass(frozen=True, slots=True)
class HistOp:
    """One logical client operation. `response` is None while pending (the client never heard
    back): such an operation may or may not have taken effect, at any time after `invoke`."""

    client: str
    key: str
    op: str  # put | append | cas | get
    arg: str
    expect: str | None
    invoke: int
    response: int | None
    result: str | None

    def describe(self) -> str:
        end = "…" if self.response is None else str(self.response)
        arg = f"{self.expect!r}->{self.arg!r}" if self.op == "cas" else repr(self.arg)
        return f"[{self.invoke},{end}] {self.client} {self.op}({self.key},{arg}) = {self.result!r}"


def check_key(ops: list[HistOp], initial: str = "", budget: int = 2_000_000) -> bool | None:
    """True if linearizable, False if not, None if the search budget ran out."""
    n = len(ops)
    if n == 0:
        return True
    ops = sorted(ops, key=lambda o: o.invoke)
    inv = [o.invoke for o in ops]
    resp = [INF if o.response is None else float(o.response) for o in ops]
    completed_mask = 0
    for i, o in enumerate(ops):
        if o.response is not None:
            completed_mask |= 1 << i
    seen: set[tuple[int, str]] = set()
    stack: list[tuple[int, str]] = [(0, initial)]
    steps = 0
    while stack:
        mask, value = stack.pop()
        if mask & completed_mask == completed_mask:
            return True
        if (mask, value) in seen:
            continue
        seen.add((mask, value))
        steps += 1
        if steps > budget:
            return None
        # An op may go next only if no unlinearized op finished before it was invoked
        # (equal times count as concurrent, to avoid false alarms).
        horizon = INF
        for i in range(n):
            if not mask >> i & 1 and resp[i] < horizon:
                horizon = resp[i]
        for i in range(n):
            if mask >> i & 1 or inv[i] > horizon:
                continue
            o = ops[i]
            new, result = kv_step(value, o.op, o.arg, o.expect)
            if o.result is not None and result != o.result:
                continue
            stack.append((mask | 1 << i, new))
    return False
