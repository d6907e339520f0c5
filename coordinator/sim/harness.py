"""A fault-free, in-memory cluster with a manual message queue, for scenario tests and the
benchmark: deliver everything, or hold back messages to script a particular interleaving."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from coordinator.paxos.node import Node, NodeConfig
from coordinator.paxos.storage import MemoryStorage
from coordinator.paxos.types import (
    ZERO_BALLOT,
    Ballot,
    Command,
    Message,
    ProposalResult,
    ReadResult,
    SlotValue,
)
from coordinator.sim.kv import KVMachine

__all__ = ["LocalCluster"]


class LocalCluster:
    def __init__(self, n: int = 3, seed: int = 0, **config: Any) -> None:
        self.ids = tuple(range(1, n + 1))
        self.founders = self.ids
        self.rng = random.Random(seed)
        self.config = config
        self.storage = {i: MemoryStorage() for i in self.ids}
        self.nodes: dict[int, Node] = {}
        self.inflight: list[Message] = []
        self.results: list[ProposalResult] = []
        self.reads: list[ReadResult] = []
        self.applied: dict[int, list[SlotValue]] = {i: [] for i in self.ids}
        self.down: set[int] = set()
        self.cut: set[tuple[int, int]] = set()
        for i in self.ids:
            self.start(i)

    def start(self, i: int, floor: Ballot = ZERO_BALLOT) -> None:
        cfg = NodeConfig(node_id=i, peers=self.founders, **self.config)
        rng = random.Random(self.rng.getrandbits(32))
        self.nodes[i] = Node(cfg, self.storage[i].load(), KVMachine(), rng, floor)
        self.down.discard(i)

    def add_node(self, i: int) -> None:
        """Start a brand-new node (empty disk) outside the founding configuration; it learns
        until a membership command makes it a member (`membership.add_node_command`)."""
        self.ids = (*self.ids, i)
        self.storage[i] = MemoryStorage()
        self.applied[i] = []
        floor = max(max(st.load().promised for st in self.storage.values()), Ballot(0, 1))
        self.start(i, floor)

    def crash(self, i: int) -> None:
        """Drops the node and anything it had not yet handed to the driver."""
        self.down.add(i)
        self.inflight = [m for m in self.inflight if m.dst != i]

    def flush(self, i: int) -> None:
        node = self.nodes[i]
        while node.has_ready():
            rd = node.ready()
            if rd.persist is not None:
                self.storage[i].save(rd.persist)
            for m in rd.messages:
                if (m.src, m.dst) not in self.cut and m.dst not in self.down:
                    self.inflight.append(m)
            self.applied[i].extend(rd.committed)
            node.advance(rd)
            self.results.extend(rd.results)
            self.reads.extend(rd.reads)

    def flush_all(self) -> None:
        for i in self.ids:
            if i not in self.down:
                self.flush(i)

    def deliver_all(
        self, keep: Callable[[Message], bool] | None = None, limit: int = 100_000
    ) -> int:
        """Deliver messages (FIFO) until none are left; `keep` may hold some back."""
        delivered = 0
        held: list[Message] = []
        self.flush_all()
        while self.inflight and delivered < limit:
            batch, self.inflight = self.inflight, []
            for m in batch:
                if keep is not None and keep(m):
                    held.append(m)
                    continue
                if m.dst in self.down:
                    continue
                self.nodes[m.dst].step(m)
                delivered += 1
            self.flush_all()
        self.inflight = held + self.inflight
        return delivered

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for i in self.ids:
                if i not in self.down:
                    self.nodes[i].tick()
            self.deliver_all()

    def elect(self, i: int) -> None:
        """Make node i campaign now and deliver until it leads.

        Models the current leader having gone silent for an election timeout first: nodes
        ignore Prepares while they still hear a working leader (leader stickiness)."""
        for j, other in self.nodes.items():
            if j == i:
                continue
            other._elapsed = max(other._elapsed, other.config.election_ticks)
            if other.lead is not None:
                other.lead.last_ack_tick = dict.fromkeys(other.others, -(10**9))
        node = self.nodes[i]
        node._elapsed = node._timeout - 1
        node.tick()
        self.deliver_all()
        assert node.is_leader, f"n{i} failed to become leader"

    def leader(self) -> Node | None:
        best: Node | None = None
        for i, n in self.nodes.items():
            if i in self.down or not n.is_leader or n.ballot is None:
                continue
            if best is None or best.ballot is None or n.ballot > best.ballot:
                best = n
        return best

    def propose(self, i: int, cmd: Command) -> None:
        self.nodes[i].propose(cmd)
        self.deliver_all()
