"""A deterministic discrete-event world: nodes, a faulty network, crash-prone disks, drifting
clocks and clients, all driven by one seeded `random.Random`.

Time is an integer in "units"; a node ticks about every `tick_unit` units (each node at its own
slightly different rate). Every source of nondeterminism is drawn from the world's RNG in event
order, so one seed always yields the same trace.

Durability model: a node's `Ready` is only drained by a FLUSH event some disk latency after the
node did work. Crashing before that flush discards the node object, and with it every state
change and message not yet persisted/sent, exactly what a real crash loses.
"""

from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass
from typing import Any

from coordinator.paxos.membership import (
    add_node_command,
    remove_node_command,
    replace_node_command,
)
from coordinator.paxos.node import Node, NodeConfig, Role
from coordinator.paxos.storage import MemoryStorage
from coordinator.paxos.types import (
    ZERO_BALLOT,
    Ballot,
    Batch,
    Command,
    Message,
    ProposalResult,
    ReadResult,
)
from coordinator.sim.kv import KVMachine
from coordinator.sim.params import SimParams, params_for_seed
from coordinator.sim.workload import Workload

__all__ = ["SimNode", "SimParams", "World", "params_for_seed"]

TICK, MSG, FLUSH, CREQ, CRESP, CTIMER, FAULT, CSTART, ADMIN = range(9)
ADMIN_CLIENT = "admin"


@dataclass(slots=True)
class SimNode:
    id: int
    storage: MemoryStorage
    period: int
    node: Node | None = None
    inc: int = 0
    flush_pending: bool = False
    crashes: int = 0
    stalled_until: int = 0  # clock stall: no ticks (a frozen timer), messages still flow
    stall_parked: bool = False
    led: object = None  # last ballot we logged this node leading, to log each term once
    # Set when the disk was replaced: the node learns until it hears a ballot above it
    # (kept with the disk, like the identity file a real node writes when it joins).
    floor: Ballot = ZERO_BALLOT


@dataclass(slots=True)
class Stats:
    events: int = 0
    messages: int = 0
    dropped: int = 0
    crashes: int = 0
    partitions: int = 0
    elections: int = 0  # ballot bumps: a node became a candidate
    pre_votes: int = 0  # pre-vote rounds started (a ballot bump only if a quorum grants)
    flushes: int = 0
    leaders: int = 0
    added: int = 0
    removed: int = 0


class World:
    def __init__(self, params: SimParams, verbose: bool = False) -> None:
        self.p = params
        self.verbose = verbose
        self.digest = 0
        self.rng = random.Random(params.seed)
        self.lost_rng = random.Random(f"lost-{params.seed}")  # closed-link hint delays
        self.now = 0
        self._q: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.trace: list[str] = []
        self.violations: list[str] = []
        self.stats = Stats()
        self.blocked: set[tuple[int, int]] = set()
        self.p_drop = params.p_drop
        self.p_dup = params.p_dup
        self.healed_at: int | None = None
        self.kill_after_ack = False
        self.ids = tuple(range(1, params.n_nodes + 1))
        self.founders = self.ids
        # Reconfiguration: one operator request at a time, retried until acknowledged; a
        # removed node is shut down (retired) a while after its removal was acknowledged.
        self.retired: set[int] = set()
        self.removing: set[int] = set()
        self.admin_seq = 0
        self.admin_op: tuple[str, int, int] | None = None  # (kind, node, new node)
        self.admin_target = 1
        self.admin_attempt = 0
        self.chosen: dict[int, Batch] = {}
        self.chosen_by: dict[int, int] = {}
        self.nodes: dict[int, SimNode] = {}
        for nid in self.ids:
            period = params.tick_unit + self.rng.randint(-params.drift, params.drift)
            self.nodes[nid] = SimNode(nid, MemoryStorage(), period)
            self._start_node(self.nodes[nid])
        self.workload = Workload(self, params)
        if params.faults:
            self._at(self.rng.randint(*params.fault_gap), FAULT, "random")
            self._at(params.fault_end, FAULT, "heal")
        else:
            self.healed_at = 0

    # --------------------------------------------------------------------------- plumbing
    def _at(self, time: int, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._q, (time, self._seq, kind, payload))

    def log(self, text: str) -> None:
        self.trace.append(f"{self.now:>6} {text}")

    def violation(self, text: str) -> None:
        self.violations.append(f"t={self.now}: {text}")
        self.log(f"VIOLATION {text}")

    def run(self) -> None:
        end = self.p.run_end
        q = self._q
        while q:
            time, _, kind, payload = heapq.heappop(q)
            if time > end:
                break
            self.now = time
            self.stats.events += 1
            self.digest = hash((self.digest, time, kind))
            if kind == MSG:
                self._deliver(payload)
            elif kind == TICK:
                self._tick(*payload)
            elif kind == FLUSH:
                self._flush(*payload)
            elif kind == CREQ:
                self._client_request(*payload)
            elif kind == CRESP:
                if payload[1].__class__ is ProposalResult and payload[1].client_id == ADMIN_CLIENT:
                    self._admin_response(payload[1])
                else:
                    self.workload.on_response(*payload)
            elif kind == ADMIN:
                self._admin_timer(*payload)
            elif kind == CTIMER:
                self.workload.on_timer(*payload)
            elif kind == CSTART:
                self.workload.on_start(payload)
            elif kind == FAULT:
                self._fault(payload)
        self.now = end

    # ------------------------------------------------------------------------------ nodes
    def _start_node(self, sn: SimNode) -> None:
        cfg = NodeConfig(
            node_id=sn.id,
            peers=self.founders,
            alpha=self.p.alpha,
            election_ticks=self.p.election_ticks,
            heartbeat_ticks=self.p.heartbeat_ticks,
            window=self.p.window,
            max_batch=self.p.max_batch,
            snapshot_every=self.p.snapshot_every,
            pre_vote=self.p.pre_vote,
            apply_budget=self.p.apply_budget,
        )
        sn.inc += 1
        sn.flush_pending = False
        sn.stalled_until = 0  # a restarted process gets a working clock
        sn.stall_parked = False
        sn.node = Node(
            cfg, sn.storage.load(), KVMachine(), random.Random(self.rng.getrandbits(64)), sn.floor
        )
        self._at(self.now + self.rng.randint(1, sn.period), TICK, (sn.id, sn.inc))

    def crash(self, nid: int) -> None:
        sn = self.nodes[nid]
        if sn.node is None:
            return
        sn.node = None
        sn.inc += 1
        sn.crashes += 1
        self.stats.crashes += 1
        self.log(f"CRASH n{nid}")
        if self.p.peer_lost:
            for j in self.ids:
                other = self.nodes[j]
                if j != nid and other.node is not None and (nid, j) not in self.blocked:
                    delay = self.lost_rng.randint(self.p.delay_min, self.p.delay_max)
                    self._at(self.now + delay, FAULT, f"lost:{j}:{nid}:{other.inc}")

    def restart(self, nid: int) -> None:
        sn = self.nodes[nid]
        if sn.node is not None or nid in self.retired:
            return
        self._start_node(sn)
        self.log(f"RESTART n{nid} (promised={sn.storage.load().promised})")

    def wipe(self, nid: int) -> None:
        """A crashed node's disk is replaced by an empty one; it rejoins like `--join`."""
        sn = self.nodes[nid]
        self.crash(nid)
        sn.storage = MemoryStorage()
        sn.floor = self.amnesia_floor(nid)
        if nid not in self.founders:  # outside the founding configuration: a learner
            sn.floor = max(sn.floor, Ballot(0, 1))
        self.log(f"WIPE disk of n{nid} (rejoins learning, floor={sn.floor})")

    @property
    def active(self) -> list[int]:
        return [nid for nid in self.ids if nid not in self.retired]

    def _voting(self, nid: int) -> bool:
        node = self.nodes[nid].node
        return node is not None and node.voter

    def amnesia_floor(self, nid: int) -> Ballot:
        """What a joining node collects in its peers' hellos: the highest ballot any other node
        has promised. Every ballot the lost disk promised is at or below it, because the
        candidate that owns such a ballot promised it durably itself."""
        return max(self.nodes[o].storage.load().promised for o in self.ids if o != nid)

    def _unstall(self, nid: int) -> None:
        sn = self.nodes[nid]
        sn.stalled_until = 0
        if sn.stall_parked:
            sn.stall_parked = False
            if sn.node is not None:
                self._at(self.now + sn.period, TICK, (nid, sn.inc))

    def _dirty(self, sn: SimNode) -> None:
        if not sn.flush_pending:
            sn.flush_pending = True
            delay = self.rng.randint(self.p.disk_min, self.p.disk_max)
            self._at(self.now + delay, FLUSH, (sn.id, sn.inc))

    def _tick(self, nid: int, inc: int) -> None:
        sn = self.nodes[nid]
        node = sn.node
        if node is None or inc != sn.inc:
            return
        if sn.stalled_until > self.now:
            sn.stall_parked = True  # the tick chain resumes from `unstall`
            return
        was = node.role
        node.tick()
        self._role_change(nid, node, was)
        if was is Role.LEADER and node.role is not Role.LEADER:
            self.log(f"n{nid} steps down (check-quorum)")
        self._dirty(sn)
        self._at(self.now + sn.period, TICK, (nid, inc))

    def _role_change(self, nid: int, node: Node, was: Role) -> None:
        """Counts ballot bumps (a node became a candidate) and pre-vote rounds; with pre-vote
        a candidacy starts when a grant arrives, not on a tick."""
        if node.role is Role.PRE_CANDIDATE and was is not Role.PRE_CANDIDATE:
            self.stats.pre_votes += 1
        if node.role is Role.CANDIDATE and was is not Role.CANDIDATE:
            self.stats.elections += 1
            self.log(f"n{nid} campaigns {node.ballot}")

    def _flush(self, nid: int, inc: int) -> None:
        sn = self.nodes[nid]
        node = sn.node
        if node is None or inc != sn.inc:
            return
        sn.flush_pending = False
        self.stats.flushes += 1
        if node.is_leader and sn.led != node.ballot:
            sn.led = node.ballot
            self.stats.leaders += 1
            self.log(f"n{nid} LEADER {node.ballot} commit={node.commit_index}")
        for _ in range(50):
            if not node.has_ready():
                break
            rd = node.ready()
            if rd.persist is not None:
                sn.storage.save(rd.persist)
            for m in rd.messages:
                self.send(m)
            for sv in rd.committed:
                self._record_chosen(nid, sv.slot, sv.value)
            node.advance(rd)
            for res in rd.results:
                self._respond(res)
            for rr in rd.reads:
                self._respond_read(rr)
            if self.kill_after_ack and node.is_leader and any(r.ok for r in rd.results):
                # The client now depends on that write; its next request meets a new leader
                # that has not necessarily applied it.
                self.kill_after_ack = False
                self.log(f"CRASH leader n{nid} right after acknowledging a write")
                self.crash(nid)
                self._at(self.now + self.rng.randint(200, 3000), FAULT, f"restart:{nid}")
                return
        if node.has_ready():
            self._dirty(sn)

    def _record_chosen(self, nid: int, slot: int, value: Batch) -> None:
        prev = self.chosen.get(slot)
        if prev is None:
            self.chosen[slot] = value
            self.chosen_by[slot] = nid
            for cmd in value.commands:
                self.workload.check_valid(cmd)
        elif prev != value:
            self.violation(
                f"AGREEMENT slot {slot}: n{self.chosen_by[slot]} chose {_fmt_batch(prev)}"
                f" but n{nid} chose {_fmt_batch(value)}"
            )

    # ---------------------------------------------------------------------------- network
    def _delay(self) -> int:
        return self.rng.randint(self.p.delay_min, self.p.delay_max)

    def send(self, m: Message) -> None:
        self.stats.messages += 1
        if (m.src, m.dst) in self.blocked or self.rng.random() < self.p_drop:
            self.stats.dropped += 1
            return
        delay = self._delay()
        if self.p.slow_node_delay and m.dst == self.p.n_nodes:
            phase = self.now % 3000
            if phase < self.p.slow_node_delay:
                delay += self.p.slow_node_delay - phase
        self._at(self.now + delay, MSG, m)
        if self.p_dup and self.rng.random() < self.p_dup:
            self._at(self.now + self._delay(), MSG, m)

    def _deliver(self, m: Message) -> None:
        sn = self.nodes[m.dst]
        if sn.node is None:
            return
        if self.verbose:
            self.log(f"  {_fmt_msg(m)}")
        was = sn.node.role
        sn.node.step(m)
        self._role_change(m.dst, sn.node, was)
        self._dirty(sn)

    # ---------------------------------------------------------------------------- clients
    def client_send(self, nid: int, kind: str, payload: Any) -> None:
        if self.rng.random() < self.p_drop:
            return
        self._at(self.now + self._delay(), CREQ, (nid, kind, payload))

    def _client_request(self, nid: int, kind: str, payload: Any) -> None:
        sn = self.nodes[nid]
        if sn.node is None:
            return
        if kind == "w":
            assert isinstance(payload, Command)
            sn.node.propose(payload)
        else:
            read_id, query = payload
            sn.node.read(read_id, query)
        self._dirty(sn)

    def _respond(self, res: ProposalResult) -> None:
        if self.rng.random() < self.p_drop:
            return
        self._at(self.now + self._delay(), CRESP, ("w", res))

    def _respond_read(self, res: ReadResult) -> None:
        if self.rng.random() < self.p_drop:
            return
        self._at(self.now + self._delay(), CRESP, ("r", res))

    def schedule_client(self, time: int, kind: int, payload: Any) -> None:
        self._at(time, kind, payload)

    # ----------------------------------------------------------------------------- faults
    def leader(self) -> int | None:
        best: tuple[int, int] | None = None
        for sn in self.nodes.values():
            node = sn.node
            if node is not None and node.is_leader and node.ballot is not None:
                key = (node.ballot.round, node.ballot.node)
                if best is None or key > best:
                    best = key
        return best[1] if best is not None else None

    def _fault(self, what: str) -> None:
        rng = self.rng
        if what.startswith("lost:"):
            j, gone, inc = (int(x) for x in what.split(":")[1:])
            sn = self.nodes[j]
            if sn.node is not None and sn.inc == inc:
                was = sn.node.role
                sn.node.peer_lost(gone)
                self._role_change(j, sn.node, was)
                self._dirty(sn)
            return
        if what.startswith("retire:"):
            _, node, eff = what.split(":")
            nid = int(node)
            members = self._latest_config()
            snaps = [self.nodes[m].storage.load().snapshot for m in members]
            done = sum(1 for sn in snaps if sn is not None and sn.index + 1 >= int(eff))
            if int(eff) and done < len(members) // 2 + 1:
                # Like an operator who waits until `/v1/cluster` shows the change durably in
                # effect (snapshot past it) at a majority of the remaining members: before,
                # a phase 1 after restarts may still need the removed node's vote.
                self._at(self.now + 500, FAULT, what)
                return
            self.crash(nid)
            self.retired.add(nid)
            self.removing.discard(nid)
            self.log(f"RETIRE n{nid} (its removal was acknowledged)")
            return
        if what == "heal":
            self.blocked.clear()
            self.kill_after_ack = False
            self.p_drop = 0.0
            self.p_dup = 0.0
            for nid in self.active:
                self.restart(nid)
                self._unstall(nid)
            self.healed_at = self.now
            self.log("HEAL all faults")
            return
        if self.healed_at is not None:
            return
        if what == "heal_net":
            self.blocked.clear()
            self.log("HEAL network")
        elif what.startswith("unstall:"):
            self._unstall(int(what.split(":")[1]))
        elif what.startswith("restart:"):
            self.restart(int(what.split(":")[1]))
        else:
            self._random_fault()
            self._at(self.now + rng.randint(*self.p.fault_gap), FAULT, "random")

    def _random_fault(self) -> None:
        rng = self.rng
        ids = self.active
        n = len(ids)
        kinds: tuple[str, ...] = (
            "split", "split", "isolate_leader", "isolate_leader", "one_way", "crash", "crash",
            "crash_leader", "crash_all", "heal_net", "stall_leader", "stall_leader",
            "leader_change_after_ack", "amnesia", "amnesia",
        )  # fmt: skip
        if self.p.reconfig:
            kinds += ("reconfig",) * self.p.reconfig_weight
        kind = rng.choice(kinds)
        up = [nid for nid in ids if self.nodes[nid].node is not None]
        if kind == "reconfig":
            self._reconfigure()
            return
        if kind == "split":
            order = list(ids)
            rng.shuffle(order)
            k = rng.randint(1, n // 2)
            a, b = order[:k], order[k:]
            self.blocked = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
            self.stats.partitions += 1
            self.log(f"PARTITION {sorted(a)} | {sorted(b)}")
        elif kind == "isolate_leader":
            lead = self.leader()
            if lead is None:
                return
            others = [x for x in ids if x != lead]
            self.blocked = {(lead, x) for x in others} | {(x, lead) for x in others}
            self.stats.partitions += 1
            self.log(f"PARTITION isolate leader n{lead}")
        elif kind == "stall_leader":
            # A leader whose clock freezes while it is cut off keeps believing it leads after
            # a successor took over: the case that separates real read-index from wishful reads.
            lead = self.leader()
            if lead is None:
                return
            length = rng.randint(2000, 8000)
            self.nodes[lead].stalled_until = self.now + length
            others = [x for x in ids if x != lead]
            self.blocked = {(lead, x) for x in others} | {(x, lead) for x in others}
            self.stats.partitions += 1
            self.log(f"STALL clock of leader n{lead} and isolate it for {length}")
            self._at(self.now + length, FAULT, "heal_net")
            self._at(self.now + length, FAULT, f"unstall:{lead}")
            return
        elif kind == "one_way":
            x, y = rng.sample(ids, 2)
            self.blocked.add((x, y))
            self.log(f"PARTITION one-way n{x} -/-> n{y}")
        elif kind in ("crash", "crash_leader") and up:
            lead = self.leader()
            victim = lead if kind == "crash_leader" and lead is not None else rng.choice(up)
            self.crash(victim)
            self._at(self.now + rng.randint(200, 3000), FAULT, f"restart:{victim}")
        elif kind == "leader_change_after_ack":
            self.kill_after_ack = True
        elif (
            kind == "amnesia"
            and self.admin_op is None
            and len(up) == n
            and all(self._voting(x) for x in up)
        ):
            # One disk at a time, like an operator replacing disks: losing a majority's disks
            # loses the cluster's memory whatever the protocol does.
            victim = rng.choice(up)
            self.wipe(victim)
            self._at(self.now + rng.randint(200, 3000), FAULT, f"restart:{victim}")
        elif kind == "crash_all":
            for nid in up:
                self.crash(nid)
                self._at(self.now + rng.randint(100, 1500), FAULT, f"restart:{nid}")
        elif kind == "heal_net":
            self.blocked.clear()
            self.log("HEAL network")
            return
        if self.blocked:
            self._at(self.now + rng.randint(500, 4000), FAULT, "heal_net")

    # ------------------------------------------------------------------ reconfiguration
    def _latest_config(self) -> tuple[int, ...]:
        """The newest membership any running replica has applied (to pick a sensible
        request; the replicated state machine decides whether it is valid)."""
        best: tuple[int, tuple[int, ...]] = (-1, self.founders)
        for sn in self.nodes.values():
            if sn.node is not None and sn.node.applied > best[0]:
                best = (sn.node.applied, sn.node.membership.latest())
        return best[1]

    def _reconfigure(self) -> None:
        """An operator adds a brand-new node (empty disk, joins as a learner with the floor
        a `--join` would collect) or removes a member, keeping 3 to 5 members."""
        if self.admin_op is not None:
            return
        rng = self.rng
        members = self._latest_config()
        # Like an operator: add a node only while every node runs and votes (a learner, or a
        # member that is down, in a grown configuration can leave no voting majority).
        healthy = all(self._voting(x) for x in self.active)
        choice = rng.random()
        if healthy and choice < 0.3:
            # Swap a member (the leader, at times) for a brand-new node in one change.
            lead = self.leader()
            old = lead if lead in members and rng.random() < 0.4 else rng.choice(members)
            nid = self._new_node()
            self.removing.add(old)
            self.admin_op = ("replace", old, nid)
            payload = replace_node_command(old, nid, f"sim-{nid}:7000")
            self.log(f"RECONFIG request replace n{old} by n{nid} (learner)")
        elif healthy and len(members) < 5 and (len(members) <= 3 or choice < 0.65):
            nid = self._new_node()
            self.admin_op = ("add", nid, nid)
            payload = add_node_command(nid, f"sim-{nid}:7000")
            self.log(f"RECONFIG request add n{nid} (learner, floor={self.nodes[nid].floor})")
        elif len(members) > 3:
            lead = self.leader()
            victim = lead if lead in members and rng.random() < 0.4 else rng.choice(members)
            self.removing.add(victim)
            self.admin_op = ("remove", victim, 0)
            payload = remove_node_command(victim)
            self.log(
                f"RECONFIG request remove n{victim}{' (the leader)' if victim == lead else ''}"
            )
        else:
            return
        self.admin_seq += 1
        self.workload.proposed[(ADMIN_CLIENT, self.admin_seq)] = payload
        self.admin_target = self.leader() or rng.choice(self.active)
        self._admin_send()

    def _new_node(self) -> int:
        nid = max(self.ids) + 1
        period = self.p.tick_unit + self.rng.randint(-self.p.drift, self.p.drift)
        self.ids = (*self.ids, nid)
        sn = SimNode(nid, MemoryStorage(), period)
        # Never below (0, 1): a node outside the founding configuration is a learner.
        sn.floor = max(self.amnesia_floor(nid), Ballot(0, 1))
        self.nodes[nid] = sn
        self._start_node(sn)
        return nid

    def _admin_send(self) -> None:
        self.admin_attempt += 1
        payload = self.workload.proposed[(ADMIN_CLIENT, self.admin_seq)]
        self.client_send(self.admin_target, "w", Command(ADMIN_CLIENT, self.admin_seq, payload))
        self._at(self.now + self.p.client_timeout, ADMIN, (self.admin_attempt, True))

    def _admin_timer(self, attempt: int, retarget: bool) -> None:
        if self.admin_op is None or attempt != self.admin_attempt:
            return
        if retarget:
            self.admin_target = self.rng.choice(self.active)
        self._admin_send()

    def _admin_response(self, res: ProposalResult) -> None:
        op = self.admin_op
        if op is None or res.seq != self.admin_seq:
            return
        if not res.ok:
            hint = res.leader_hint
            self.admin_target = hint if hint is not None else self.rng.choice(self.active)
            delay = self.rng.randint(20, 200)
            self._at(self.now + delay, ADMIN, (self.admin_attempt, False))
            return
        self.admin_op = None
        self.log(f"RECONFIG {op[0]} n{op[1]} acknowledged: {res.result.decode()}")
        outcome = json.loads(res.result)
        if outcome.get("detail") != "chosen":
            # Refused (e.g. the node to replace had already left): the operator shuts the
            # node it started for nothing down again.
            self.removing.discard(op[1])
            if op[2]:
                self._at(self.now, FAULT, f"retire:{op[2]}:0")
            return
        if op[0] == "add":
            self.stats.added += 1
        elif op[0] == "replace":
            self.stats.added += 1
            self.stats.removed += 1
            eff = json.loads(res.result).get("effective_slot", 0)
            self._at(self.now + self.rng.randint(500, 5000), FAULT, f"retire:{op[1]}:{eff}")
        else:
            self.stats.removed += 1
            # The operator stops the removed node once the change is acknowledged; until
            # then it keeps running and must not disturb anyone.
            eff = json.loads(res.result).get("effective_slot", 0)
            self._at(self.now + self.rng.randint(500, 5000), FAULT, f"retire:{op[1]}:{eff}")


def _fmt_batch(b: Batch) -> str:
    if not b.commands:
        return "noop"
    return "[" + ",".join(f"{c.client_id}#{c.seq}" for c in b.commands) + "]"


def _fmt_msg(m: Message) -> str:
    parts = [f"{type(m).__name__} n{m.src}->n{m.dst} b={m.ballot}"]
    for name in ("from_slot", "commit", "round", "need", "slots", "promised"):
        if hasattr(m, name):
            parts.append(f"{name}={getattr(m, name)}")
    for name in ("entries", "accepted"):
        items = getattr(m, name, None)
        if items:
            parts.append(f"{name}=" + ",".join(f"{e.slot}:{_fmt_batch(e.value)}" for e in items))
    snap = getattr(m, "snapshot", None)
    if snap is not None:
        parts.append(f"snapshot@{snap.index}")
    return " ".join(parts)
