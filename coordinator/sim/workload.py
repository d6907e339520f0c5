"""Concurrent clients with sessions: each has one operation outstanding, retries it (same
`(client_id, seq)`) on timeout or redirect, possibly at another node, and records a history
for the linearizability checker."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from coordinator.paxos.types import Command, ProposalResult, ReadResult
from coordinator.sim.kv import read_query, write_command
from coordinator.sim.linearizability import HistOp
from coordinator.sim.params import SimParams


class World(Protocol):
    """What the workload needs of the simulated world (`coordinator.sim.world.World`): its
    RNG and clock, the node ids, a way to schedule client events, and its log. A protocol,
    so that the workload does not import the world that drives it."""

    rng: random.Random
    ids: tuple[int, ...]
    now: int
    verbose: bool
    healed_at: int | None

    @property
    def active(self) -> list[int]:
        """Nodes an operator has not shut down (removed nodes are retired)."""
        ...

    def client_send(self, nid: int, kind: str, payload: Any) -> None: ...

    def schedule_client(self, time: int, kind: int, payload: Any) -> None: ...

    def log(self, text: str) -> None: ...

    def violation(self, text: str) -> None: ...


__all__ = ["Client", "Workload"]

CTIMER, CSTART = 5, 7  # event kinds shared with world.py


@dataclass(slots=True)
class Pending:
    key: str
    op: str
    arg: str
    expect: str | None
    invoke: int
    seq: int = 0
    read_id: int = 0
    read_ids: tuple[int, ...] = ()  # every attempt's id: a late answer to any of them counts


@dataclass(slots=True)
class Client:
    cid: str
    target: int
    seq: int = 0
    attempt: int = 0
    op: Pending | None = None
    last_seen: str = ""


class Workload:
    def __init__(self, world: World, params: SimParams) -> None:
        self.w = world
        self.p = params
        self.clients: dict[str, Client] = {}
        self.history: list[HistOp] = []
        self.acked: dict[tuple[str, int], str] = {}
        self.proposed: dict[tuple[str, int], bytes] = {}
        self._read_owner: dict[int, str] = {}
        self._next_read = 0
        self.stop_at = params.run_end - params.liveness_bound - 2 * params.client_timeout
        self.max_heal_latency = 0
        for i in range(params.n_clients):
            cid = f"c{i + 1}"
            self.clients[cid] = Client(cid, world.rng.choice(world.ids))
            world.schedule_client(world.rng.randint(0, 500), CSTART, cid)

    # ----------------------------------------------------------------------------- issue
    def on_start(self, cid: str) -> None:
        c = self.clients[cid]
        w = self.w
        if c.op is not None or w.now >= self.stop_at:
            return
        rng = w.rng
        key = rng.choice(self.p.keys)
        r = rng.random()
        if r < 0.45:
            c.op = Pending(key, "get", "", None, w.now)
        else:
            c.seq += 1
            tag = f"{cid[1:]}.{c.seq}"
            if r < 0.7:
                c.op = Pending(key, "put", tag, None, w.now, seq=c.seq)
            elif r < 0.9:
                c.op = Pending(key, "append", tag + ",", None, w.now, seq=c.seq)
            else:
                c.op = Pending(key, "cas", tag, c.last_seen, w.now, seq=c.seq)
            op = c.op
            self.proposed[(cid, c.seq)] = write_command(op.op, key, op.arg, op.expect)
        op = c.op
        expect = "" if op.expect is None else f",{op.expect!r}"
        w.log(f"{cid} invoke {op.op}({key},{op.arg!r}{expect})")
        self._send(c)

    def _send(self, c: Client) -> None:
        op = c.op
        assert op is not None
        c.attempt += 1
        w = self.w
        if w.verbose:
            w.log(f"{c.cid} -> n{c.target} attempt {c.attempt}")
        if op.op == "get":
            self._next_read += 1
            op.read_id = self._next_read
            op.read_ids += (op.read_id,)
            self._read_owner[op.read_id] = c.cid
            w.client_send(c.target, "r", (op.read_id, read_query(op.key)))
        else:
            payload = self.proposed[(c.cid, op.seq)]
            w.client_send(c.target, "w", Command(c.cid, op.seq, payload))
        w.schedule_client(w.now + self.p.client_timeout, CTIMER, (c.cid, c.attempt, True))

    def _other(self, c: Client) -> int:
        return self.w.rng.choice([n for n in self.w.active if n != c.target])

    def on_timer(self, cid: str, attempt: int, retarget: bool) -> None:
        c = self.clients[cid]
        if c.op is None or attempt != c.attempt:
            return
        if retarget:
            c.target = self._other(c)
            self.w.log(f"{cid} timeout, retry at n{c.target}")
        self._send(c)

    # ---------------------------------------------------------------------------- answers
    def on_response(self, kind: str, res: ProposalResult | ReadResult) -> None:
        if isinstance(res, ProposalResult):
            c = self.clients.get(res.client_id)
            if c is None or c.op is None or c.op.op == "get" or c.op.seq != res.seq:
                return
        else:
            owner = self._read_owner.get(res.read_id)
            c = self.clients.get(owner) if owner is not None else None
            if c is None or c.op is None or res.read_id not in c.op.read_ids:
                return
        if res.ok:
            value = res.result if isinstance(res, ProposalResult) else res.value
            self._complete(c, value.decode())
        elif res.error == "not_leader":
            hint = res.leader_hint
            c.target = hint if hint is not None and hint != c.target else self._other(c)
            delay = self.w.rng.randint(20, 200)
            self.w.schedule_client(self.w.now + delay, CTIMER, (c.cid, c.attempt, False))
        else:
            self.w.violation(f"client {c.cid} got unexpected error {res!r}")

    def _complete(self, c: Client, result: str) -> None:
        op = c.op
        assert op is not None
        w = self.w
        w.log(f"{c.cid} done {op.op}({op.key}) = {result!r}")
        self.history.append(
            HistOp(c.cid, op.key, op.op, op.arg, op.expect, op.invoke, w.now, result)
        )
        if op.op == "get":
            c.last_seen = result
        else:
            self.acked[(c.cid, op.seq)] = result
        if w.healed_at is not None:
            latency = w.now - max(op.invoke, w.healed_at)
            self.max_heal_latency = max(self.max_heal_latency, latency)
            if latency > self.p.liveness_bound:
                w.violation(f"LIVENESS {c.cid} {op.op} took {latency} units after healing")
        c.op = None
        w.schedule_client(w.now + w.rng.randint(0, 300), CSTART, c.cid)

    def check_valid(self, cmd: Command) -> None:
        if self.proposed.get((cmd.client_id, cmd.seq)) != cmd.payload:
            self.w.violation(f"VALIDITY chosen command {cmd.client_id}#{cmd.seq} never proposed")

    def finish(self) -> list[HistOp]:
        """Close the history: unanswered writes stay pending (they may have taken effect),
        unanswered reads are dropped (they had no effect)."""
        w = self.w
        hist = list(self.history)
        for c in self.clients.values():
            op = c.op
            if op is None:
                continue
            if w.healed_at is not None and w.now - max(op.invoke, w.healed_at) > (
                self.p.liveness_bound
            ):
                w.violation(f"LIVENESS {c.cid} {op.op} still pending at end of run")
            if op.op != "get":
                hist.append(HistOp(c.cid, op.key, op.op, op.arg, op.expect, op.invoke, None, None))
        return hist
