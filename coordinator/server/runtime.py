"""The asyncio driver of one coordinator node: persist, then send, then apply.

One loop owns the Paxos `Node`. Frames from peers and client requests only enqueue work; the
loop steps everything queued, asks for a `Ready`, makes its `persist` part durable (fsync in a
worker thread so the event loop keeps accepting frames meanwhile — those frames become the
next batch: group commit), sends its messages, then hands results back to waiting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.paxos.errors import DecodeError
from coordinator.paxos.node import Node, NodeConfig
from coordinator.paxos.types import (
    ZERO_BALLOT,
    Ballot,
    Command,
    Message,
    ProposalResult,
    ReadResult,
    Ready,
)
from coordinator.server.identity import (
    Identity,
    cluster_id_of,
    has_state,
    load_identity,
    new_incarnation,
    nonce,
    save_identity,
)
from coordinator.server.metadata_app import MetadataApp
from coordinator.server.savepolicy import SavePolicy
from coordinator.server.storage import DiskStorage
from coordinator.server.ticks import TickClock, tick_forever
from coordinator.server.tls import TlsConfig
from coordinator.server.transport import PeerTransport
from coordinator.server.wire import decode, encode

__all__ = ["IdentityError", "NodeRuntime", "ServerConfig"]

log = logging.getLogger(__name__)

# Frame kinds on the peer transport: Paxos messages, and the gossip that tells every node
# where the others serve their HTTP API (so followers can forward to the leader).
_PAXOS = b"P"
_HELLO = b"H"


# A Ready whose apply holds the loop longer than this is logged (see `_handle`).
_SLOW_APPLY_SECONDS = 0.1


class IdentityError(Exception):
    """The data directory cannot be used as configured; exit with one line."""


@dataclass
class ServerConfig:
    node_id: int
    peers: dict[int, tuple[str, int]]
    api: tuple[str, int]
    data_dir: Path
    secret: bytes
    api_token: str
    advertise_api: str = ""
    tick_ms: int = 25
    election_ticks: int = 12
    heartbeat_ticks: int = 2
    fsync: bool = True
    snapshot_every: int = 256
    max_batch: int = 256
    window: int = 32
    # How long one Ready may apply chosen commands before the loop serves frames, ticks and
    # HTTP again (a slot may be split; NodeConfig.apply_budget). A worker registration costs
    # up to ~30 ms at 10,000 partitions while few workers share them.
    apply_slice_ms: float = 20.0
    worker_session_timeout: float = 10.0
    # Save a Ready on the event loop itself, not in a thread, while inline saves take under
    # this many ms (a fast disk; server/savepolicy.py). 0 = always a thread.
    inline_save_ms: float = 1.0
    initial_cluster: str = "existing"  # "new": bootstrap from empty data directories
    join: bool = False  # an empty data directory replaces a lost disk (learn, then vote)
    tls: TlsConfig | None = None  # HTTPS API and mutual-TLS peer links (server/tls.py)
    extra: dict[str, str] = field(default_factory=dict)


class NodeRuntime:
    """Owns the core, the disk and the peer connections of one node."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.identity = load_identity(cfg.data_dir)
        if self.identity is None and has_state(cfg.data_dir):
            # A data directory from before identities: its state is intact, adopt it.
            self.identity = Identity("", cfg.node_id, new_incarnation())
            save_identity(cfg.data_dir, self.identity, cfg.fsync)
        if self.identity is not None and self.identity.node_id != cfg.node_id:
            raise IdentityError(
                f"data dir {cfg.data_dir} belongs to node {self.identity.node_id}, "
                f"not {cfg.node_id}"
            )
        self._nonce = nonce(cfg.data_dir, cfg.fsync) if self.identity is None else ""
        self._peer_hello: dict[int, dict[str, object]] = {}
        # Every peer address this node has heard of: --peers, then the replicated
        # membership's addresses (which win), then addresses named in peers' hellos.
        self._book: dict[int, tuple[str, int]] = dict(cfg.peers)
        # Nodes a hello from a peer further ahead names: linked to until this node has
        # applied as far (a new node learns the current configuration this way).
        self._hinted: set[int] = set()
        self._hinted_applied = 0
        self._synced: object = None
        self.storage = DiskStorage(cfg.data_dir / "paxos", fsync=cfg.fsync)
        self.app = MetadataApp()
        self.node = self._make_node(self.identity.floor if self.identity else ZERO_BALLOT)
        self.transport = PeerTransport(
            cfg.node_id, cfg.peers[cfg.node_id], cfg.peers, cfg.secret, self._on_frame,
            tls=cfg.tls, on_peer_lost=self._on_peer_lost,
        )  # fmt: skip
        self._lost: list[int] = []
        self.peer_lost_hints = 0
        self.api_urls: dict[int, str] = {cfg.node_id: self.advertised_api()}
        self._inbox: list[Message] = []
        self._wake = asyncio.Event()
        self._proposals: dict[tuple[str, int], asyncio.Future[ProposalResult]] = {}
        self._reads: dict[int, asyncio.Future[ReadResult]] = {}
        self._read_ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Resolves (with a reason) if a task that should run forever ends; see `_supervise`.
        self.failed: asyncio.Future[str] | None = None
        self.refused: str | None = None
        self.leader_since: float | None = None
        self.on_leadership: list[Callable[[], None]] = []
        # Metrics the API exports.
        self.fsync_seconds: list[float] = []
        self.saves = SavePolicy(cfg.inline_save_ms / 1000)
        self.ticks = TickClock(cfg.tick_ms / 1000, 0.0)
        self.proposals_total = 0
        self.reads_total = 0
        self.ready_total = 0
        self.started = time.monotonic()

    def founders(self) -> tuple[int, ...]:
        """The founding configuration (slot 1's): the founders recorded in the data dir's
        identity, not --peers, which after a reconfiguration may list anything. A node with
        no identity yet takes part in nothing; before the pre-identity data dirs, --peers."""
        ident = self.identity
        if ident is not None and ident.members:
            return tuple(sorted(ident.members))
        if ident is None and self.cfg.join:
            return (self.cfg.node_id,)  # placeholder until the peers' hellos say
        return tuple(sorted(self.cfg.peers))

    def _make_node(self, floor: Ballot) -> Node:
        cfg = self.cfg
        return Node(
            NodeConfig(
                node_id=cfg.node_id,
                peers=self.founders(),
                election_ticks=cfg.election_ticks,
                heartbeat_ticks=cfg.heartbeat_ticks,
                window=cfg.window,
                max_batch=cfg.max_batch,
                snapshot_every=cfg.snapshot_every,
            ),
            self.storage.load(),
            self.app,
            random.Random(),  # election jitter only; nothing replicated depends on it
            floor,
        )

    def _establish(self) -> None:
        """An empty data directory takes part in nothing until every peer has said who it
        is: with `new`, all founders' nonces give the cluster id; with `join`, the peers'
        cluster id and the highest ballot they promised (the floor) are adopted."""
        others = [p for p in self.cfg.peers if p != self.cfg.node_id]
        hellos = self._peer_hello
        members = {p: h for p, h in hellos.items() if h.get("cluster") is not None}
        if self.cfg.join:
            if len(members) < len(others):
                return
            ids = {str(h["cluster"]) for h in members.values()}
            if len(ids) != 1:
                return
            floor = max(Ballot(*h["promised"]) for h in members.values())  # type: ignore[misc]
            if floor == ZERO_BALLOT:
                return  # no ballot yet: nothing to learn above; wait for the first election
            raw = next((h["members"] for h in members.values() if h.get("members")), None)
            # The founders, so that slot 1's configuration is the cluster's (the current one
            # arrives with the leader's snapshot). None only for a pre-identity cluster.
            founders = {int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else None
            ident = Identity(ids.pop(), self.cfg.node_id, new_incarnation(), floor, founders)
        else:
            for p, h in sorted(members.items()):
                raw = h.get("members")
                listed = raw.items() if isinstance(raw, dict) else ()
                founders = {int(k): str(v) for k, v in listed}
                if founders.get(self.cfg.node_id) != self._nonce:
                    self.refused = (
                        f"data dir {self.cfg.data_dir} is empty but node {p} already belongs "
                        f"to cluster {h['cluster']} (was this disk replaced?); restart with "
                        "--join to rejoin it as a learner, see README 'Replacing a disk'"
                    )
                    if self.failed is not None and not self.failed.done():
                        self.failed.set_result(self.refused)
                    return
                ident = Identity(str(h["cluster"]), self.cfg.node_id, new_incarnation(),
                                 ZERO_BALLOT, founders)  # fmt: skip
                break
            else:
                if len(hellos) < len(others) or any(not h.get("nonce") for h in hellos.values()):
                    return
                founders = {p: str(h["nonce"]) for p, h in hellos.items()}
                founders[self.cfg.node_id] = self._nonce
                ident = Identity(cluster_id_of(founders), self.cfg.node_id, new_incarnation(),
                                 ZERO_BALLOT, founders)  # fmt: skip
        save_identity(self.cfg.data_dir, ident, self.cfg.fsync)
        self.identity = ident
        self.node = self._make_node(ident.floor)
        self._sync_peers()
        log.info("node %d joined cluster %s (floor %s)", self.cfg.node_id, ident.cluster_id,
                 ident.floor)  # fmt: skip

    def _hello(self) -> bytes:
        ident = self.identity
        promised = self.node.acceptor.promised
        body: dict[str, object] = {
            "api": self.advertised_api(),
            "cluster": ident.cluster_id if ident else None,
            "members": ident.members if ident else None,
            "nonce": self._nonce if self.cfg.initial_cluster == "new" else None,
            "promised": [promised.round, promised.node],
            # Where this node's view of the configuration lives, for a node behind it (a
            # new one above all) to link to every member before its log says who they are.
            "applied": self.node.applied,
            "addrs": {
                str(n): f"{self._book[n][0]}:{self._book[n][1]}"
                for n in sorted({self.cfg.node_id, *self.node.membership.known()})
                if n in self._book
            },
        }
        return _HELLO + json.dumps(body).encode()

    # ------------------------------------------------------------------------ lifecycle
    def advertised_api(self) -> str:
        if self.cfg.advertise_api:
            return self.cfg.advertise_api
        host, port = self.cfg.api
        if host in ("0.0.0.0", "::", ""):
            host = self.cfg.peers[self.cfg.node_id][0]
        return f"{'https' if self.cfg.tls else 'http'}://{host}:{port}"

    async def start(self) -> None:
        await self.transport.start()
        self.failed = asyncio.get_running_loop().create_future()
        self._sync_peers()
        self._tasks.append(asyncio.create_task(self._loop(), name="paxos-loop"))
        self._tasks.append(
            asyncio.create_task(tick_forever(self.ticks, self._on_tick), name="paxos-ticker")
        )
        self._tasks.append(asyncio.create_task(self._gossip(), name="api-gossip"))
        for task in [*self._tasks, *self.transport.tasks]:
            task.add_done_callback(self._supervise)

    def _supervise(self, task: asyncio.Task[None]) -> None:
        """Every task of a node runs until `stop()`. One that ends early leaves a node that
        still answers HTTP but no longer takes part in consensus (or cannot reach a peer),
        which nobody would notice until a second failure costs the quorum; so its end is
        reported through `failed`, and `serve` stops the process with an error instead."""
        failed = self.failed
        if self._stopping or task.cancelled() or failed is None or failed.done():
            return
        exc = task.exception()
        log.critical("task %s of node %d stopped", task.get_name(), self.cfg.node_id,
                     exc_info=exc)  # fmt: skip
        failed.set_result(f"task {task.get_name()} stopped: {exc!r}")

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            # A task that failed was reported through `failed` already.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.transport.stop()
        self.storage.close()

    # -------------------------------------------------------------------------- inbound
    def _on_frame(self, sender: int, body: bytes) -> None:
        kind, payload = body[:1], body[1:]
        if kind == _HELLO:
            hello = json.loads(payload)
            url = hello["api"]
            if not isinstance(url, str) or not url.startswith("http"):
                raise DecodeError("hello frame without an http api url")
            self._peer_hello[sender] = hello
            ident = self.identity
            if ident is None:
                self._hint(hello)
                self._establish()
            elif hello.get("cluster") == ident.cluster_id:
                self.api_urls[sender] = url
                self._hint(hello)
                self._sync_peers()
            return
        if kind != _PAXOS:
            raise DecodeError(f"unknown frame kind {kind!r}")
        cid, sep, payload = payload.partition(b"\0")
        if not sep:
            raise DecodeError("paxos frame without a cluster id")
        if self.identity is None or cid != self.identity.cluster_id.encode():
            # Another cluster's node, or one that has not established its identity: it must
            # not take part in our consensus.
            self.transport.dropped["other_cluster"] += 1
            return
        msg = decode(payload)
        if msg.src != sender or msg.dst != self.cfg.node_id:
            raise DecodeError(f"frame from {sender} claims src={msg.src} dst={msg.dst}")
        self._inbox.append(msg)
        self._wake.set()

    def _on_peer_lost(self, peer: int) -> None:
        """A link to `peer` was closed by its end: handed to the core at the next loop
        iteration (`Node.peer_lost`: if it was our leader, pre-vote now, not after the
        election timeout)."""
        self._lost.append(peer)
        self.peer_lost_hints += 1
        self._wake.set()

    def _hint(self, hello: dict[str, object]) -> None:
        applied, addrs = hello.get("applied"), hello.get("addrs")
        if not isinstance(applied, int) or not isinstance(addrs, dict):
            return  # a node of an older version
        if applied <= max(self.node.applied, self._hinted_applied):
            return  # not ahead of us: its configuration is no news (a removed node's least)
        hinted: set[int] = set()
        for key, text in addrs.items():
            parsed = _address(text)
            if parsed is None or not str(key).isdigit() or int(key) < 1:
                continue
            self._book.setdefault(int(key), parsed)
            hinted.add(int(key))
        self._hinted, self._hinted_applied = hinted, applied

    def _sync_peers(self) -> None:
        """Open links to every node of a current or pending configuration (and to removed
        nodes until they have learned their removal, and to those a peer ahead of us named),
        close every other. Frames from a node without a link are dropped, so a removed node
        cannot disrupt the members. Cheap when nothing changed: it runs after every Ready."""
        if self.identity is None or self.failed is None:
            return  # not started, or not established: the --peers links are all it needs
        node = self.node
        if node.applied >= self._hinted_applied:
            self._hinted = set()
        key = (tuple(node.membership.configs), node.departed, frozenset(self._hinted),
               len(self._book))  # fmt: skip
        if key == self._synced:
            return
        self._synced = key
        for n, text in node.membership.addresses.items():
            parsed = _address(text)
            if parsed is not None:
                self._book[n] = parsed
        want = ({*node.others, *node.departed} | self._hinted) - {self.cfg.node_id}
        for peer in sorted(set(self.transport.peers) - want):
            log.info("node %d: closing the link to node %d (not a member)", self.cfg.node_id,
                     peer)  # fmt: skip
            self.transport.remove_peer(peer)
            self.api_urls.pop(peer, None)
        for peer in sorted(want):
            addr = self._book.get(peer)
            if addr is None:
                continue  # learned with the next hello that names it
            task = self.transport.add_peer(peer, addr)
            if task is not None:
                log.info("node %d: opened a link to node %d at %s:%d", self.cfg.node_id,
                         peer, *addr)  # fmt: skip
                task.add_done_callback(self._supervise)

    async def _gossip(self) -> None:
        while True:
            hello = self._hello()
            for peer in self.transport.peers:
                self.transport.send(peer, hello)
            # Quickly until every peer's address is known (a follower cannot forward to a
            # leader it cannot locate), then slowly to refresh after restarts.
            known = self.identity is not None and all(
                p in self.api_urls for p in self.transport.peers
            )
            await asyncio.sleep(2.0 if known else 0.1)

    def _on_tick(self) -> None:
        self._pending_ticks += 1
        self._wake.set()

    _pending_ticks = 0

    # ----------------------------------------------------------------------------- loop
    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            inbox, self._inbox = self._inbox, []
            ticks, self._pending_ticks = self._pending_ticks, 0
            if self.identity is None:
                continue  # not a member of any cluster yet: no votes, no campaigns
            for msg in inbox:
                self.node.step(msg)
            lost, self._lost = self._lost, []
            for peer in lost:
                self.node.peer_lost(peer)
            for _ in range(ticks):
                self.node.tick()
            was_leader = self.leader_since is not None
            while self.node.has_ready():
                await self._handle(self.node.ready())
                if self.node.apply_pending:
                    # More chosen commands to apply (`apply_slice_ms`): first let the transport
                    # read frames and the ticker tick, then step them, so heartbeats keep
                    # going out through a long apply.
                    self._wake.set()
                    await asyncio.sleep(0)
                    break
            self._track_leadership(was_leader)

    async def _handle(self, rd: Ready) -> None:
        self.ready_total += 1
        if rd.persist is not None:
            t0 = time.perf_counter()
            snapshot = rd.persist.snapshot is not None
            inline = self.saves.inline(snapshot)
            if inline:
                self.storage.save(rd.persist)
            else:
                await asyncio.to_thread(self.storage.save, rd.persist)
            saved = time.perf_counter() - t0
            self.saves.record(inline, snapshot, saved)
            self.fsync_seconds.append(saved)
            if saved > _SLOW_APPLY_SECONDS:
                snap = rd.persist.snapshot
                log.warning(
                    "node %d: a durable write%s took %.0f ms (Paxos waits for it)",
                    self.cfg.node_id,
                    "" if snap is None else f" with a {len(snap.data) // 1024} KB snapshot",
                    saved * 1e3,
                )
            if len(self.fsync_seconds) > 4096:
                del self.fsync_seconds[:2048]
        cid = (self.identity.cluster_id if self.identity else "").encode() + b"\0"
        for msg in rd.messages:
            self.transport.send(msg.dst, _PAXOS + cid + encode(msg))
        t1 = time.perf_counter()
        deadline = t1 + self.cfg.apply_slice_ms / 1000
        before = self.node.applied
        self.node.advance(rd, lambda: time.perf_counter() > deadline)
        took = time.perf_counter() - t1
        if took > _SLOW_APPLY_SECONDS:
            # The loop does nothing else meanwhile: no heartbeats, no frames read, no HTTP.
            # Longer than an election timeout and the followers elect another leader. Only a
            # single command this slow can get here (the slice stops after the first).
            log.warning(
                "node %d: applying slots %d..%d held the event loop for %.0f ms",
                self.cfg.node_id, before + 1, self.node.applied, took * 1e3,
            )  # fmt: skip
        self._sync_peers()
        for res in rd.results:
            fut = self._proposals.pop((res.client_id, res.seq), None)
            if fut is not None and not fut.done():
                fut.set_result(res)
        for read in rd.reads:
            rfut = self._reads.pop(read.read_id, None)
            if rfut is not None and not rfut.done():
                rfut.set_result(read)

    def _track_leadership(self, was_leader: bool) -> None:
        if self.node.is_leader and not was_leader:
            self.leader_since = time.monotonic()
            log.info("node %d became leader at ballot %s", self.cfg.node_id, self.node.ballot)
            for cb in self.on_leadership:
                cb()
        elif not self.node.is_leader and was_leader:
            self.leader_since = None
            log.info("node %d is no longer leader", self.cfg.node_id)
            # Requests waiting on this node will not be answered by it; their clients retry
            # (with the same session seq, so nothing applies twice).
            for fut in self._proposals.values():
                if not fut.done():
                    fut.set_result(
                        ProposalResult("", 0, False, error="not_leader", leader_hint=None)
                    )
            self._proposals.clear()
            for rfut in self._reads.values():
                if not rfut.done():
                    rfut.set_result(ReadResult(0, False, error="not_leader"))
            self._reads.clear()

    # ---------------------------------------------------------------------- client side
    async def propose(
        self, payload: bytes, client_id: str | None = None, seq: int | None = None,
        timeout: float = 5.0,
    ) -> ProposalResult:  # fmt: skip
        """Replicate one command. A client that retries sends the same `(client_id, seq)` and
        gets the first result back instead of a second application."""
        if client_id is None or seq is None:
            client_id, seq = f"anon-{uuid.uuid4().hex}", 1
        key = (client_id, seq)
        fut = self._proposals.get(key)
        shared = fut is not None  # a retry while the first attempt is still pending
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._proposals[key] = fut
            self.node.propose(Command(client_id, seq, payload))
            self.proposals_total += 1
            self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                # One future per request on the hot path; shield only a shared one.
                return await (asyncio.shield(fut) if shared else fut)
        except TimeoutError:
            if not shared:
                self._proposals.pop(key, None)
            return ProposalResult(client_id, seq, False, error="timeout")

    async def read(self, query: bytes, timeout: float = 5.0) -> ReadResult:
        read_id = next(self._read_ids)
        fut: asyncio.Future[ReadResult] = asyncio.get_running_loop().create_future()
        self._reads[read_id] = fut
        self.node.read(read_id, query)
        self.reads_total += 1
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            self._reads.pop(read_id, None)
            return ReadResult(read_id, False, error="timeout")

    def leader_url(self) -> str | None:
        leader = self.cfg.node_id if self.node.is_leader else self.node.leader_id
        return None if leader is None else self.api_urls.get(leader)

    def status(self) -> dict[str, object]:
        n = self.node
        ballot = n.ballot
        promised = n.acceptor.promised
        return {
            "node_id": self.cfg.node_id,
            "role": n.role.value,
            "leader_id": self.cfg.node_id if n.is_leader else n.leader_id,
            "leader_api": self.leader_url(),
            "ballot": str(ballot) if ballot is not None else None,
            "promised": str(promised),
            "commit_index": n.commit_index,
            "applied_index": n.applied,
            "snapshot_index": n.snap_index,
            "peers": {str(p): url for p, url in sorted(self.api_urls.items())},
            # Whether this node may vote now: established, past its floor (a new or
            # replaced node: caught up and admitted), and a member of the next slot.
            "voter": self.identity is not None and n.voter and n.member,
            "membership": self.membership_status(),
            "frames_dropped": dict(self.transport.dropped),
            # Ticks not counted because this node's event loop woke late (starved of CPU or
            # blocked): a rising count explains slow elections without any fault.
            "loop_late": {
                "ticks_dropped": self.ticks.dropped,
                "max_seconds": round(self.ticks.late_max, 3),
            },
            "tls": self.cfg.tls is not None,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
        }

    def membership_status(self) -> dict[str, object]:
        """The replicated configuration as this node has applied it: the members of the next
        slot, and every change chosen but not yet in effect (`in_effect` false)."""
        if self.identity is None:
            return {"members": [], "founders": [], "addresses": {}, "pending": [],
                    "in_effect": False, "established": False}  # fmt: skip
        m = self.node.membership
        nxt = self.node.applied + 1
        pending = [
            {"effective_slot": eff, "members": list(members)}
            for eff, members in m.configs
            if eff > nxt
        ]
        return {
            "members": list(m.at(nxt)),
            "founders": list(self.founders()),
            "addresses": {
                str(n): f"{a[0]}:{a[1]}" for n, a in sorted(self._book.items()) if n in m.known()
            },
            "pending": pending,
            "in_effect": not pending,
            "established": True,
        }


def _address(text: object) -> tuple[str, int] | None:
    if not isinstance(text, str):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)
