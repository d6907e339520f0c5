"""The replica façade: one object per node, driven by `step`, `tick`, `propose`, `read`,
`ready` and `advance`, and doing no I/O of its own.

Driver contract (one loop iteration)::

    rd = node.ready()
    storage.save(rd.persist)          # 1. durable first
    transport.send(rd.messages)       # 2. only then tell anyone
    node.advance(rd)                  # 3. apply chosen slots, serve reads
    deliver(rd.results, rd.reads)     #    answers to clients

Do not call `step`/`tick`/`propose`/`read` between `ready()` and `advance()`: `ready()` hands
over the pending outputs, and `advance()` is where the applied index moves.

Safety notes that the code relies on:

* A follower treats slot s as chosen from a leader's commit index only if its own accepted entry
  for s carries that leader's ballot. A leader sends one value per slot per ballot, and while it
  leads it learns chosen values only from a majority of its own ballot (it ignores `Learn` and
  `InstallSnapshot`), so that entry is the chosen value.
* Ballots are never reused: a candidate durably promises its own ballot before sending Prepare.
* Membership is replicated (`membership.py`): a change chosen at slot i takes effect at slot
  i + alpha. Votes for slot s count only in the configuration of s, and an Accept for s leaves
  only once every slot up to s - alpha is applied, so that configuration is known. Phase 1 is
  complete only with a majority of every configuration the recovered range can span
  (docs/architecture.md, 2, "Reconfiguration").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from coordinator.paxos.acceptor import Acceptor
from coordinator.paxos.application import SessionMachine, StateMachine
from coordinator.paxos.errors import ConfigError
from coordinator.paxos.leader import Leadership, PendingRead, best_snapshot, merge_promises
from coordinator.paxos.membership import Membership, majority, phase1_quorum
from coordinator.paxos.types import (
    NOOP,
    ZERO_BALLOT,
    Accept,
    Accepted,
    Ballot,
    Batch,
    Command,
    DurableState,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Learn,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ProposalResult,
    ReadResult,
    Ready,
    SlotValue,
    Snapshot,
)

__all__ = ["Node", "NodeConfig", "RandomSource", "Role"]


class RandomSource(Protocol):
    """The only randomness the core uses; pass a seeded `random.Random`."""

    def randint(self, a: int, b: int) -> int: ...


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"  # asking whether peers would promise; nothing persisted
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Timeouts are in ticks. `max_batch=1` disables batching; `snapshot_every=0` disables
    snapshots (and therefore log truncation)."""

    node_id: int
    peers: tuple[int, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    window: int = 32
    max_batch: int = 64
    snapshot_every: int = 64
    max_learn: int = 128
    # Slots between choosing a membership change and its effect. Replicated semantics: every
    # node of a cluster must use the same value (the runtime does not expose it).
    alpha: int = 32
    # Pre-vote before raising the durable ballot (etcd-io/raft PreVote). Off only to measure
    # the old behaviour side by side (tests/coordinator/sim/test_sim_pre_vote.py).
    pre_vote: bool = True
    # At most this many commands applied per `advance` (0 = every chosen slot at once); the
    # rest wait for the next Ready. A driver on one event loop applies a Ready without a
    # break, and one slot of 133 worker registrations at 10,000 partitions held the loop for
    # 1.1 s: no heartbeat went out and the followers elected another leader. A few commands
    # at a time let the driver send heartbeats and read frames in between
    # (docs/architecture.md, 2, "Driver").
    apply_budget: int = 0

    def validate(self, learner: bool = False) -> None:
        """`peers` is the founding configuration. Only a learner (a node added later, or one
        whose disk was replaced) may be outside it."""
        if self.node_id not in self.peers and not learner:
            raise ConfigError(f"node_id {self.node_id} not in peers {self.peers}")
        if len(set(self.peers)) != len(self.peers) or len(self.peers) % 2 == 0:
            raise ConfigError(f"peers must be an odd number of distinct ids, got {self.peers}")
        if self.heartbeat_ticks < 1 or self.election_ticks <= 2 * self.heartbeat_ticks:
            raise ConfigError("election_ticks must exceed two heartbeat intervals")
        if self.window < 1 or self.max_batch < 1 or self.max_learn < 1 or self.alpha < 1:
            raise ConfigError("window, max_batch, max_learn and alpha must be positive")


class Node:
    def __init__(
        self,
        config: NodeConfig,
        durable: DurableState,
        app: StateMachine,
        rng: RandomSource,
        floor: Ballot = ZERO_BALLOT,
    ) -> None:
        """`floor` is set for a node whose storage was lost (a replaced disk): it may have
        promised or accepted anything up to `floor` and forgotten it, so it only learns until
        it hears a leader of a higher ballot, i.e. one whose phase 1 ran without it."""
        config.validate(learner=floor != ZERO_BALLOT)
        self.floor = floor
        self._admission: tuple[Ballot, int] | None = None
        self.config = config
        self.id = config.node_id
        self._rng = rng
        self.acceptor = Acceptor(durable)
        self.machine = SessionMachine(app, Membership.initial(config.peers, config.alpha))
        snap = self.acceptor.snapshot
        if snap is not None:
            self.machine.restore(snap.data)
        self.applied = self.acceptor.snap_index
        self.first_unchosen = self.applied + 1
        self._handed = self.applied
        # Commands of slot `applied + 1` already applied (`apply_budget` splits a slot). While
        # non-zero the machine is ahead of `applied`, so no snapshot is taken: it would claim
        # `applied` and hold part of the next slot, which a restore would apply again.
        self._cursor = 0
        self.log: dict[int, Batch] = {}
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self.lead: Leadership | None = None
        self._ticks = 0
        self._elapsed = 0
        self._hb_elapsed = 0
        self._timeout = self._new_timeout()
        self._max_round = self.acceptor.promised.round
        self._outbox: list[Message] = []
        self._results: list[ProposalResult] = []
        self._reads: list[ReadResult] = []
        self._waiting: dict[tuple[str, int], None] = {}
        self._learn_sent: dict[int, tuple[int, int]] = {}
        # Nodes that left the configuration, and the slot up to which they must learn what
        # was chosen to see it: the leader heartbeats them until they have (then they know
        # they were removed and stay quiet).
        self._departed: dict[int, int] = {}
        # Pre-vote round in progress: the ballot it would campaign with, and who granted it.
        self._pre_ballot: Ballot | None = None
        self._pre_grants: set[int] = set()
        self._pre_learners: set[int] = set()
        # The leader whose link closed (`peer_lost`): its messages do not reset the election
        # countdown until our next pre-vote round has started.
        self._suspect: int | None = None
        self._suspect_until = 0

    # ---------------------------------------------------------------------------- queries
    @property
    def commit_index(self) -> int:
        return self.first_unchosen - 1

    @property
    def snap_index(self) -> int:
        return self.acceptor.snap_index

    @property
    def ballot(self) -> Ballot | None:
        return self.lead.ballot if self.lead is not None else None

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def membership(self) -> Membership:
        """The replicated membership as of `applied` (with changes still pending)."""
        return self.machine.membership

    @property
    def others(self) -> tuple[int, ...]:
        """Every other node of the current or a pending configuration: whom a leader sends
        heartbeats and accepts to, and whom a candidate asks for promises."""
        return tuple(sorted(n for n in self.membership.known() if n != self.id))

    @property
    def departed(self) -> tuple[int, ...]:
        """Nodes removed from the configuration that the leader still heartbeats until they
        have learned their removal (the runtime keeps their links open meanwhile)."""
        return tuple(sorted(self._departed))

    @property
    def member(self) -> bool:
        """Whether the configuration of the first slot this node does not know chosen counts
        it. Only such a node campaigns: a removed node stays quiet, and a node being added
        waits until its configuration is in effect (leading slots it has no vote in, it
        would hand off at once and campaign again)."""
        return self.id in self.membership.at(self.first_unchosen)

    def _live(self, lead: Leadership) -> bool:
        """Check-quorum: a majority of every configuration of the open slots was heard from
        within an election timeout."""
        horizon = self._ticks - self.config.election_ticks
        acks = lead.last_ack_tick
        hi = max(lead.next_slot, self.first_unchosen)
        for members in self.membership.between(self.first_unchosen, hi):
            live = sum(1 for p in members if p == self.id or acks.get(p, 0) >= horizon)
            if live < majority(members):
                return False
        return True

    @property
    def voter(self) -> bool:
        """Whether this node may promise and accept. A node that lost its storage votes again
        only after durably promising a ballot above `floor`: such a ballot's phase 1 ran with a
        quorum of other nodes after the loss, so it recovered every value the old incarnation
        helped choose and exceeds every ballot it may have promised."""
        return self.acceptor.promised > self.floor or self.floor == ZERO_BALLOT

    def _admit(self, ballot: Ballot, commit: int) -> bool:
        """For a learner: whether to vote in `ballot`. Only a ballot above the floor will do
        (else its leader is asked to run phase 1 again: a Nack above the floor makes a leader
        re-campaign at once), and only once this node has durably re-acquired, as a snapshot,
        every slot that leader knew chosen (`commit`): slots chosen before its phase 1 are
        not re-proposed, and may be durable only at the remaining nodes that accepted them.
        `commit` includes the leader's recovery target: the values its phase 1 recovered may
        be durable only at the nodes that reported them and at the leader itself, and a
        learner that voted before they were chosen could form a quorum without any of those
        and so lose a chosen value (docs/architecture.md, 2)."""
        if self.voter:
            return True
        if ballot <= self.floor:
            return False
        if self._admission is None or self._admission[0] != ballot:
            self._admission = (ballot, commit)
        else:
            self._admission = (ballot, max(commit, self._admission[1]))
        self._try_admit()
        return self.voter

    def _try_admit(self) -> None:
        adm = self._admission
        if adm is None or self.voter or self.applied < adm[1]:
            return
        if self.applied > self.snap_index:
            self._take_snapshot()
        # Persisted with the snapshot, before any promise; never below what it accepted as a
        # learner (its accepted ballots were its only promise so far).
        top = self.acceptor.max_accepted_ballot()
        self.acceptor.promise_self(adm[0] if top is None else max(adm[0], top))
        self._admission = None

    def _provoke(self, ballot: Ballot, leader: int) -> None:
        self._outbox.append(Nack(self.id, leader, ballot, Ballot(self.floor.round + 1, 0)))

    @property
    def serving(self) -> bool:
        """Leader whose state machine has applied every slot any predecessor may have chosen
        (its own no-op barrier included). Only then may a decision rest on local state; before,
        a new leader's replica can still be missing a predecessor's acknowledged commands."""
        lead = self.lead
        return (
            self.role is Role.LEADER
            and lead is not None
            and lead.active
            and self.applied >= lead.recovery_target
        )

    # ------------------------------------------------------------------------- client API
    def propose(self, cmd: Command) -> None:
        """Queue a command; its outcome arrives as a `ProposalResult` in a later `Ready`."""
        if self.role is Role.LEADER and self.lead is not None:
            self._waiting[(cmd.client_id, cmd.seq)] = None
            self.lead.queue.append(cmd)
        else:
            self._results.append(
                ProposalResult(
                    cmd.client_id, cmd.seq, False, error="not_leader", leader_hint=self.leader_id
                )
            )

    def read(self, read_id: int, query: bytes) -> None:
        """Linearizable read via read-index: remember the commit index, confirm leadership
        with a heartbeat round started after this call, serve once applied."""
        lead = self.lead
        if self.role is not Role.LEADER or lead is None:
            self._reads.append(
                ReadResult(read_id, False, error="not_leader", leader_hint=self.leader_id)
            )
            return
        index = max(self.commit_index, lead.recovery_target)
        lead.reads.append(PendingRead(read_id, query, index, lead.read_round()))
        lead.hb_wanted = True

    # ------------------------------------------------------------------------------- time
    def tick(self) -> None:
        self._ticks += 1
        lead = self.lead
        if self.role is Role.LEADER and lead is not None:
            self._hb_elapsed += 1
            if self._hb_elapsed >= self.config.heartbeat_ticks:
                self._broadcast_heartbeat(lead)
            if not self._live(lead):
                self._step_down()  # check-quorum: an isolated leader stops serving
            return
        self._elapsed += 1
        if (
            self.role is Role.CANDIDATE
            and lead is not None
            and self._elapsed % self.config.heartbeat_ticks == 0
        ):
            for p in lead.targets:
                if p not in lead.promises:
                    self._outbox.append(Prepare(self.id, p, lead.ballot, lead.from_slot))
        if (
            self.role is Role.PRE_CANDIDATE
            and self._pre_ballot is not None
            and self._elapsed % self.config.heartbeat_ticks == 0
        ):
            for p in self.others:
                if p not in self._pre_grants:
                    self._outbox.append(PreVote(self.id, p, self._pre_ballot))
        if self._elapsed >= self._timeout and self.voter and self.member:
            if self.config.pre_vote:
                self._pre_campaign()
            else:
                self._campaign()

    def peer_lost(self, peer: int) -> None:
        """The driver saw the connection to `peer` closed by the other end (its process died
        or restarted: the kernel closes its sockets at once). If that peer is our leader, do
        not wait out the election timeout: stop counting it as heard, so that we grant
        pre-votes, and pre-vote ourselves within 0 to `heartbeat_ticks` ticks (randomised, so
        that two followers seldom ask at once).

        A hint only, never a vote: if the leader is in fact alive, every node that still hears
        it (and the leader itself, while it hears a quorum) refuses the pre-vote, and its next
        heartbeat makes us a follower again, so a spurious close costs one pre-vote round and
        no ballot. A silent failure (a partition, a frozen host) still waits for the election
        timeout. docs/architecture.md, 2, "Pre-vote and check-quorum"."""
        if self.role is not Role.FOLLOWER or self.leader_id != peer or peer == self.id:
            return
        e = self.config.election_ticks
        self._elapsed = max(self._elapsed, e)
        self._timeout = self._elapsed + self._rng.randint(1, self.config.heartbeat_ticks + 1)
        # Frames the dead leader sent before it died may still arrive after the close: for
        # two election timeouts they neither restart our countdown (`_follow`) nor make us
        # refuse another follower's pre-vote (`_hears_live_leader`). If the leader is alive
        # after all, that costs at most a refused pre-vote round or two, never a ballot.
        self._suspect = peer
        self._suspect_until = self._ticks + 2 * e

    def _new_timeout(self) -> int:
        e = self.config.election_ticks
        return self._rng.randint(e, 2 * e - 1)

    # ------------------------------------------------------------------------- elections
    def _pre_campaign(self) -> None:
        """Ask the peers whether they would promise a higher ballot before raising our own.

        Without this a node that times out while it cannot reach a quorum (partitioned, or a
        starved event loop that reads the leader's heartbeats late) durably promises ever
        higher ballots; when it hears the leader again it Nacks it and the leader must re-run
        phase 1 above it: a ballot round with no fault. Peers refuse while they hear a live
        leader (`_hears_live_leader`), so only a real leader failure leads to a ballot bump."""
        self._step_down()  # also abandons a phase 1 that timed out: pre-vote again first
        self.role = Role.PRE_CANDIDATE
        self._max_round = max(self._max_round, self.acceptor.promised.round)
        ballot = Ballot(self._max_round + 1, self.id)
        self._pre_ballot = ballot
        self._pre_grants = {self.id}
        self._pre_learners = set()
        for p in self.others:
            self._outbox.append(PreVote(self.id, p, ballot))
        if self._pre_vote_won():
            self._campaign(frozenset(self._pre_learners))

    def _pre_vote_won(self) -> bool:
        """A majority of the configuration of the first open slot granted: phase 1 needs at
        least that (and possibly more configurations, which it asks for itself)."""
        members = self.membership.at(self.first_unchosen)
        return sum(1 for p in members if p in self._pre_grants) >= majority(members)

    def _on_pre_vote(self, m: PreVote) -> None:
        """Grant unless we hear a live leader other than the asker. Granting changes nothing
        here: no promise, no timer reset, so a failed pre-vote leaves no trace."""
        if m.src == self.id or m.src not in self.membership.known():
            return
        # A learner grants too: in a configuration of two whose other member is a learner
        # (its disk replaced), no pre-vote could pass otherwise, and the phase 1 that follows
        # needs no promise from it (`phase1_quorum`). It refuses while it hears a leader.
        granted = not self._hears_live_leader(m.src)
        self._outbox.append(
            PreVoteReply(self.id, m.src, m.ballot, granted, self.acceptor.promised, not self.voter)
        )

    def _on_pre_vote_reply(self, m: PreVoteReply) -> None:
        self._observe(m.promised)
        if self.role is not Role.PRE_CANDIDATE or m.ballot != self._pre_ballot:
            return
        if m.granted:
            self._pre_grants.add(m.src)
            if m.learner:
                self._pre_learners.add(m.src)
            if self._pre_vote_won():
                self._campaign(frozenset(self._pre_learners))

    def _campaign(self, learners: frozenset[int] = frozenset()) -> None:
        """`learners`: members that said, in the pre-vote this campaign follows, that they are
        floor learners (none after a Nack: that campaign had no pre-vote)."""
        self._step_down()
        self._max_round = max(self._max_round, self.acceptor.promised.round) + 1
        ballot = Ballot(self._max_round, self.id)
        self.acceptor.promise_self(ballot)
        lead = Leadership(ballot=ballot, from_slot=self.first_unchosen, learners=learners)
        self.lead = lead
        self.role = Role.CANDIDATE
        self.leader_id = None
        _, entries, snap = self.acceptor.prepare(ballot, lead.from_slot)
        lead.promises[self.id] = Promise(self.id, self.id, ballot, lead.from_slot, entries, snap)
        lead.targets = self.others
        for p in lead.targets:
            self._outbox.append(Prepare(self.id, p, ballot, lead.from_slot))
        if self._phase1_complete(lead):
            self._become_leader(lead)

    def _phase1_complete(self, lead: Leadership) -> bool:
        """Whether the promises cover a majority of every configuration a slot this leader
        must recover (or may open before it learns more) is chosen in.

        Slots from `first_unchosen` to `top` (the highest slot any promise reports) will be
        re-proposed with the merged values; the configuration of a slot s depends on the
        values up to s - alpha, so it is computed from the known log and the merged values
        (which are the chosen ones wherever a slot may be chosen: a slot is only ever
        proposed once everything alpha slots below it is chosen). A majority of the
        configurations up to `top + alpha` also shows that nothing above `top` was chosen.
        Newly found configurations can add nodes to ask: `lead.targets` grows."""
        promises = list(lead.promises.values())
        snap = best_snapshot(promises)
        if snap is not None and snap.index > self.applied:
            self._install_snapshot(snap)
        start = self.first_unchosen
        values = merge_promises(promises, start)
        top = max([start - 1, *values, *(s for s in self.log if s >= start)])
        batches = []
        for slot in range(self.applied + 1, top + 1):
            known = self.log.get(slot)
            batches.append((slot, known if known is not None else values.get(slot, NOOP)))
        spec = self.machine.speculate_membership(batches)
        configs = spec.between(start, top + spec.alpha)
        wanted = {p for members in configs for p in members if p != self.id}
        new = sorted(wanted - set(lead.targets))
        if new:
            lead.targets = (*lead.targets, *new)
            for p in new:
                self._outbox.append(Prepare(self.id, p, lead.ballot, lead.from_slot))
        return all(self._phase1_quorum_in(lead, members) for members in configs)

    def _phase1_quorum_in(self, lead: Leadership, members: tuple[int, ...]) -> bool:
        """A majority of promises; or, where the other members are floor learners (they
        said so in the pre-vote), the fewest promises that meet every majority
        (`phase1_quorum`: Flexible Paxos). The smaller quorum only where learners would
        otherwise block it: a voter that completed phase 1 alone and then lost its disk could
        come back below a ballot it used, since no other node promised that ballot."""
        promised = sum(1 for p in members if p in lead.promises)
        if promised >= majority(members):
            return True
        learners = sum(1 for p in members if p in lead.learners and p not in lead.promises)
        return promised >= phase1_quorum(members) and promised + learners >= majority(members)

    def _step_down(self) -> None:
        lead = self.lead
        if lead is not None:
            for cmd in lead.queue:
                self._waiting.pop((cmd.client_id, cmd.seq), None)
                self._results.append(
                    ProposalResult(cmd.client_id, cmd.seq, False, error="not_leader")
                )
            for r in lead.reads:
                self._reads.append(ReadResult(r.read_id, False, error="not_leader"))
        self.lead = None
        self.role = Role.FOLLOWER
        self._pre_ballot = None
        self._pre_grants = set()
        self._elapsed = 0
        self._timeout = self._new_timeout()

    def _follow(self, ballot: Ballot) -> None:
        """Called only for ballots >= our promise: that sender is the live leader."""
        if self.lead is not None and self.lead.ballot < ballot:
            self._step_down()
        if self.lead is None:
            self.role = Role.FOLLOWER
            self._pre_ballot = None
            self.leader_id = ballot.node
            if not self._suspecting(ballot.node):
                self._elapsed = 0

    def _become_leader(self, lead: Leadership) -> None:
        promises = list(lead.promises.values())
        snap = best_snapshot(promises)
        if snap is not None and snap.index > self.applied:
            self._install_snapshot(snap)
        start = self.first_unchosen
        values = merge_promises(promises, start)
        top = max([start - 1, *values, *(s for s in self.log if s >= start)])
        lead.next_slot = start
        for slot in range(start, top + 1):
            known = self.log.get(slot)
            value = known if known is not None else values.get(slot, NOOP)
            lead.open_slot(value)
        # Every slot a predecessor may have chosen is at or below `top` (chosen slots below
        # `start` we know; above it a quorum's promises report them) and is re-proposed in our
        # own ballot, so once `top` is applied our replica holds every earlier choice: this is
        # the barrier `serving` and read-index wait for (Raft needs an extra no-op for the same
        # effect because it cannot re-propose old entries under a new term).
        lead.recovery_target = top
        lead.active = True
        # Accept every recovered value durably in our own ballot at once, before anything
        # leaves (the Accepts themselves wait for their slot's configuration): from now on a
        # majority that includes this node reports them.
        self.acceptor.accept(
            lead.ballot, tuple(SlotValue(s, lead.proposals[s]) for s in range(start, top + 1))
        )
        for p in self.others:
            lead.last_ack_tick[p] = self._ticks
        self.role = Role.LEADER
        self.leader_id = self.id
        lead.sent_upto = start - 1
        self._send_due_accepts(lead)
        self._broadcast_heartbeat(lead)

    # ------------------------------------------------------------------------- messages
    def step(self, msg: Message) -> None:
        if isinstance(msg, Accept):
            self._on_accept(msg)
        elif isinstance(msg, Accepted):
            self._on_accepted(msg)
        elif isinstance(msg, Heartbeat):
            self._on_heartbeat(msg)
        elif isinstance(msg, HeartbeatAck):
            self._on_heartbeat_ack(msg)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg)
        elif isinstance(msg, Promise):
            self._on_promise(msg)
        elif isinstance(msg, Nack):
            self._on_nack(msg)
        elif isinstance(msg, Learn):
            self._on_learn(msg)
        elif isinstance(msg, InstallSnapshot):
            self._on_install_snapshot(msg)
        elif isinstance(msg, PreVote):
            self._on_pre_vote(msg)
        elif isinstance(msg, PreVoteReply):
            self._on_pre_vote_reply(msg)

    def _observe(self, ballot: Ballot) -> None:
        if ballot.round > self._max_round:
            self._max_round = ballot.round

    def _hears_live_leader(self, other: int) -> bool:
        """Whether a Prepare from `other` would disrupt a leader that is still working.

        A follower that heard its leader within the minimum election timeout, and a leader
        that still hears a quorum, ignore other nodes' Prepares (the Raft "leader stickiness"
        rule). Otherwise a node that restarts and campaigns before the leader's heartbeats
        reach it deposes a healthy leader, and under load that can cascade into minutes
        without one. Not promising is always safe; a real failure still lets candidates
        through once the leader has been silent for an election timeout."""
        if self.role is Role.LEADER and self.lead is not None:
            return self._live(self.lead)
        return (
            self.role is Role.FOLLOWER
            and self.leader_id is not None
            and self.leader_id != other
            and self._elapsed < self.config.election_ticks
            and not self._suspecting(self.leader_id)
        )

    def _suspecting(self, peer: int) -> bool:
        """Whether `peer`'s link closed lately (`peer_lost`) and its frames are not news."""
        return peer == self._suspect and self._ticks < self._suspect_until

    def _on_prepare(self, m: Prepare) -> None:
        self._observe(m.ballot)
        if not self.voter:
            return  # a learner's promise would stand on forgotten state
        if m.src != self.id and m.src not in self.membership.known():
            return  # not a member (e.g. removed): it must not disrupt the cluster
        if m.src != self.id and self._hears_live_leader(m.src):
            return
        ok, entries, snap = self.acceptor.prepare(m.ballot, m.from_slot)
        if not ok:
            self._outbox.append(Nack(self.id, m.src, m.ballot, self.acceptor.promised))
            return
        if self.lead is not None and self.lead.ballot < m.ballot:
            self._step_down()
        if self.lead is None:
            self.role = Role.FOLLOWER  # a pre-candidate gives up its pre-vote round
            self._pre_ballot = None
            self.leader_id = None
            self._elapsed = 0  # give the candidate a chance before competing with it
        self._outbox.append(Promise(self.id, m.src, m.ballot, m.from_slot, entries, snap))

    def _on_promise(self, m: Promise) -> None:
        lead = self.lead
        if lead is None or lead.active or m.ballot != lead.ballot:
            return
        lead.promises[m.src] = m
        if self._phase1_complete(lead):
            self._become_leader(lead)

    def _on_nack(self, m: Nack) -> None:
        self._observe(m.promised)
        lead = self.lead
        if lead is not None and m.ballot == lead.ballot and m.promised > lead.ballot:
            if self.role is Role.LEADER:
                # A node promised a higher ballot (e.g. it campaigned after a restart) and
                # refuses our messages. Re-run phase 1 above that ballot at once: followers
                # that still follow us promise it, and the refusing node rejoins, instead of
                # everyone waiting out an election timeout.
                self._campaign()
            else:
                self._step_down()

    def _on_accept(self, m: Accept) -> None:
        self._observe(m.ballot)
        if not self.voter:  # admission comes with a heartbeat, which names the recovery target
            if m.ballot <= self.floor:
                self._provoke(m.ballot, m.src)
                return
            # Above the floor a learner votes in phase 2 without promising: all it forgot lies
            # at or below the floor, and the leader's phase 1 ran without it, so its accept is
            # as good as any. Without this a configuration of two could not choose the values
            # the learner must hold before it is admitted (its recovery target), and would
            # stall for good (docs/architecture.md, 2, "Reconfiguration").
            if not self.acceptor.accept_unpromised(m.ballot, m.entries):
                top = self.acceptor.max_accepted_ballot()
                self._outbox.append(Nack(self.id, m.src, m.ballot, top or self.floor))
                return
            self.leader_id = m.src
            self._learn_commit(m.ballot, m.commit)
            slots = tuple(sv.slot for sv in m.entries)
            self._outbox.append(Accepted(self.id, m.src, m.ballot, slots))
            return
        if not self.acceptor.accept(m.ballot, m.entries):
            self._outbox.append(Nack(self.id, m.src, m.ballot, self.acceptor.promised))
            return
        self._follow(m.ballot)
        self._learn_commit(m.ballot, m.commit)
        slots = tuple(sv.slot for sv in m.entries)
        self._outbox.append(Accepted(self.id, m.src, m.ballot, slots))

    def _on_accepted(self, m: Accepted) -> None:
        lead = self.lead
        if self.role is not Role.LEADER or lead is None or m.ballot != lead.ballot:
            return
        lead.last_ack_tick[m.src] = self._ticks
        for slot in m.slots:
            self._vote(lead, slot, m.src)

    def _vote(self, lead: Leadership, slot: int, voter: int) -> None:
        votes = lead.votes.get(slot)
        if votes is None:
            return
        votes.add(voter)
        members = self.membership.at(slot)  # known: Accepts for `slot` went out
        if sum(1 for p in members if p in votes) >= majority(members):
            del lead.votes[slot]
            self._chosen(slot, lead.proposals.pop(slot))

    def _on_heartbeat(self, m: Heartbeat) -> None:
        self._observe(m.ballot)
        if not self._admit(m.ballot, max(m.commit, m.recovery)):
            self.leader_id = m.src  # so that requests can be forwarded meanwhile
            if m.ballot <= self.floor:
                self._provoke(m.ballot, m.src)
                return
            top = self.acceptor.max_accepted_ballot()
            if top is not None and m.ballot < top:
                self._outbox.append(Nack(self.id, m.src, m.ballot, top))
                return
            self._elapsed = 0  # it hears a leader: refuse others' pre-votes meanwhile
            self._learn_commit(m.ballot, m.commit)  # slots it accepted as a learner
            # Round 0 confirms no read; `need` asks the leader for catch-up.
            self._outbox.append(HeartbeatAck(self.id, m.src, m.ballot, 0, self.first_unchosen))
            return
        if m.ballot < self.acceptor.promised:
            self._outbox.append(Nack(self.id, m.src, m.ballot, self.acceptor.promised))
            return
        self._follow(m.ballot)
        self._learn_commit(m.ballot, m.commit)
        self._outbox.append(HeartbeatAck(self.id, m.src, m.ballot, m.round, self.first_unchosen))

    def _on_heartbeat_ack(self, m: HeartbeatAck) -> None:
        lead = self.lead
        if self.role is not Role.LEADER or lead is None or m.ballot != lead.ballot:
            return
        if m.round > 0:  # a learner's ack (round 0) is no sign of a voting quorum
            lead.last_ack_tick[m.src] = self._ticks
        if m.round > lead.acked_round.get(m.src, 0):
            lead.acked_round[m.src] = m.round
        if m.need > lead.need.get(m.src, 0):
            lead.need[m.src] = m.need
            self._maybe_hand_off(lead)
        if m.need > self._departed.get(m.src, m.need):
            del self._departed[m.src]
        if m.need <= self.commit_index:
            self._catch_up(lead, m.src, m.need)

    def _catch_up(self, lead: Leadership, peer: int, need: int) -> None:
        # One catch-up message per peer per `need` and heartbeat pair: every heartbeat ack
        # of a lagging follower asks again, and resending large Learns that are still in
        # flight queued heartbeats behind megabytes of frames.
        sent = self._learn_sent.get(peer)
        if (
            sent is not None
            and sent[0] == need
            and self._ticks - sent[1] < 2 * self.config.heartbeat_ticks
        ):
            return
        self._learn_sent[peer] = (need, self._ticks)
        snap = self.acceptor.snapshot
        if snap is not None and need <= snap.index:
            self._outbox.append(InstallSnapshot(self.id, peer, lead.ballot, snap))
            return
        last = min(self.commit_index, need + self.config.max_learn - 1)
        entries = tuple(SlotValue(s, self.log[s]) for s in range(need, last + 1))
        self._outbox.append(Learn(self.id, peer, lead.ballot, entries))

    def _on_learn(self, m: Learn) -> None:
        self._observe(m.ballot)
        if self.role is Role.LEADER:
            return  # a leader learns only from its own majority; see module docstring
        if m.ballot >= self.acceptor.promised:
            self._follow(m.ballot)
        for sv in m.entries:
            self._chosen(sv.slot, sv.value)

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        self._observe(m.ballot)
        if self.role is Role.LEADER:
            return
        if m.ballot >= self.acceptor.promised:
            self._follow(m.ballot)
        if m.snapshot.index > self.applied:
            self._install_snapshot(m.snapshot)

    # ------------------------------------------------------------------------ choosing
    def _chosen(self, slot: int, value: Batch) -> None:
        if slot <= self.snap_index or slot in self.log or slot < self.first_unchosen:
            return
        self.log[slot] = value
        while self.first_unchosen in self.log:
            self.first_unchosen += 1

    def _learn_commit(self, ballot: Ballot, commit: int) -> None:
        lo = self.first_unchosen
        if commit < lo:
            return
        acc = self.acceptor.accepted
        if commit - lo + 1 <= len(acc):
            slots: list[int] | range = range(lo, commit + 1)
        else:
            slots = sorted(s for s in acc if lo <= s <= commit)
        for s in slots:
            e = acc.get(s)
            if e is not None and e.ballot == ballot:
                self._chosen(s, e.value)

    def _send_due_accepts(self, lead: Leadership) -> None:
        """Send Accepts for open slots whose configuration is now known."""
        hi = min(lead.next_slot - 1, self.applied + self.config.alpha)
        if hi > lead.sent_upto:
            slots = [s for s in range(lead.sent_upto + 1, hi + 1) if s in lead.proposals]
            lead.sent_upto = hi
            self._send_accepts(lead, slots)

    def _send_accepts(self, lead: Leadership, slots: list[int]) -> None:
        if not slots:
            return
        entries = tuple(SlotValue(s, lead.proposals[s]) for s in slots)
        if self.acceptor.accept(lead.ballot, entries):
            for s in slots:
                self._vote(lead, s, self.id)
        # Each slot goes only to the members of its configuration: a node votes only in
        # slots it is a member for (learners catch up through Learn and InstallSnapshot).
        configs = {s: self.membership.at(s) for s in slots}
        for p in self.others:
            mine = tuple(sv for sv in entries if p in configs[sv.slot])
            if mine:
                self._outbox.append(Accept(self.id, p, lead.ballot, mine, self.commit_index))

    def _broadcast_heartbeat(self, lead: Leadership) -> None:
        """Also retransmits open slots to peers that have not accepted them, which is how lost
        Accepts (and followers that restarted) are repaired."""
        lead.hb_round += 1
        lead.hb_wanted = False
        self._hb_elapsed = 0
        commit = self.commit_index
        membership = self.membership
        for p in self.others:
            missing = tuple(
                SlotValue(s, v)
                for s, v in lead.proposals.items()
                if s <= lead.sent_upto and p not in lead.votes[s] and p in membership.at(s)
            )
            if missing:
                self._outbox.append(Accept(self.id, p, lead.ballot, missing, commit))
            self._outbox.append(
                Heartbeat(self.id, p, lead.ballot, commit, lead.hb_round, lead.recovery_target)
            )
        for p in self._departed:
            if p != self.id:
                self._outbox.append(Heartbeat(self.id, p, lead.ballot, commit, lead.hb_round))

    def _install_snapshot(self, snap: Snapshot) -> None:
        self.machine.restore(snap.data)
        self.applied = snap.index
        self._cursor = 0  # the restored state replaces any part of a slot applied so far
        self._handed = max(self._handed, snap.index)
        self.acceptor.install_snapshot(snap)
        for slot in [s for s in self.log if s <= snap.index]:
            del self.log[slot]
        if self.first_unchosen <= snap.index:
            self.first_unchosen = snap.index + 1
        while self.first_unchosen in self.log:
            self.first_unchosen += 1

    # -------------------------------------------------------------------- driver handoff
    def has_ready(self) -> bool:
        if self._outbox or self._results or self._reads or self.acceptor.has_persist():
            return True
        if self.commit_index > self._handed or self.applied < self._handed:
            return True
        lead = self.lead
        if self.role is Role.LEADER and lead is not None:
            if lead.hb_wanted:
                return True
            if self._can_open(lead):
                return True
            if lead.reads and self._servable(lead):
                return True
        return False

    def _can_open(self, lead: Leadership) -> bool:
        """A new slot opens for queued commands, or as a no-op while a membership change is
        pending (so that it takes effect without client traffic), within the window and
        never beyond `applied + alpha`, the last slot whose configuration is known."""
        if not lead.active or len(lead.proposals) >= self.config.window:
            return False
        if lead.next_slot > self.applied + self.config.alpha:
            return False
        if self.id not in self.membership.at(lead.next_slot):
            return False  # removed from here on: hand off instead (`_maybe_hand_off`)
        return bool(lead.queue) or lead.next_slot < self.membership.last_effective()

    def ready(self) -> Ready:
        lead = self.lead
        if self.role is Role.LEADER and lead is not None:
            while self._can_open(lead):
                lead.open_slot(lead.take_batch(self.config.max_batch))
            self._send_due_accepts(lead)
            if lead.hb_wanted:
                self._broadcast_heartbeat(lead)
            self._serve_reads(lead)
        committed = self._take_committed()
        rd = Ready(
            persist=self.acceptor.take_persist(),
            messages=tuple(self._outbox),
            committed=committed,
            results=tuple(self._results),
            reads=tuple(self._reads),
        )
        self._outbox = []
        self._results = []
        self._reads = []
        return rd

    def _take_committed(self) -> tuple[SlotValue, ...]:
        """The chosen slots not yet handed to the driver, in order (to record; `advance`
        applies them, `apply_budget` commands at a time)."""
        out = tuple(SlotValue(s, self.log[s]) for s in range(self._handed + 1, self.first_unchosen))
        self._handed = max(self._handed, self.commit_index)
        return out

    @property
    def apply_pending(self) -> bool:
        """Handed slots wait to be applied (`apply_budget`): the driver should serve its other
        work (frames, ticks, heartbeats) before asking for the next Ready."""
        return self.applied < self._handed

    def _apply_chosen(self, enough: Callable[[], bool] | None) -> None:
        """Apply handed slots in order, one command at a time, until `apply_budget` commands
        (if set) or until the driver's `enough()` says so (checked after each command, so at
        least one is applied): a driver passes a clock there, the simulator a count."""
        budget = self.config.apply_budget
        done = 0
        while self.applied < self._handed:
            if (budget and done >= budget) or (done and enough is not None and enough()):
                return
            slot = self.applied + 1
            commands = self.log[slot].commands
            if self._cursor < len(commands):
                self._apply(slot, commands[self._cursor : self._cursor + 1])
                self._cursor += 1
                done += 1
            if self._cursor >= len(commands):
                self.applied, self._cursor = slot, 0

    def advance(self, rd: Ready, enough: Callable[[], bool] | None = None) -> None:
        """Obey `rd` (the driver persisted and sent it) and apply chosen commands: all of
        them, or as many as `apply_budget` and `enough` allow; `apply_pending` then says more
        wait (docs/architecture.md, 2, "Driver")."""
        self._apply_chosen(enough)
        if self._cursor:
            # Mid-slot: the machine is ahead of `applied`. Membership pruning and snapshots
            # wait for the slot's end; the leader's sending and reads need nothing of it.
            lead = self.lead
            if self.role is Role.LEADER and lead is not None:
                self._send_due_accepts(lead)
                self._serve_reads(lead)
            return
        before = self.membership.configs[0]
        known = self.membership.known()
        self.membership.prune(self.applied)
        for gone in known - self.membership.known():
            self._departed[gone] = self.applied
        if self.membership.configs[0] != before:
            # A new configuration is in effect: make durable that every slot of the old one
            # is chosen, so that no later phase 1 (after a restart of every node) needs a
            # majority of the old configuration, whose removed members may be gone for good.
            self._take_snapshot()
        lead = self.lead
        if self.role is Role.LEADER and lead is not None:
            self._send_due_accepts(lead)
            self._serve_reads(lead)
            self._maybe_hand_off(lead)
        every = self.config.snapshot_every
        if every > 0 and self.applied - self.snap_index >= every:
            self._take_snapshot()
        self._try_admit()

    def _maybe_hand_off(self, lead: Leadership) -> None:
        """A leader removed from the configuration leads until every slot it was a member for
        is chosen and a majority of the next configuration knows it (their heartbeat acks
        say so), then steps down; those members elect a leader among themselves. Stepping
        down earlier could leave slots that only it knew chosen to be recovered by a
        configuration that may by then be short of a voting majority."""
        members = self.membership.at(self.applied + 1)
        if self.id in members:
            return
        informed = sum(1 for p in members if lead.need.get(p, 0) > self.applied)
        if informed >= majority(members):
            self._step_down()
            self.leader_id = None

    def _apply(self, slot: int, commands: tuple[Command, ...]) -> None:
        for cmd in commands:
            out = self.machine.apply(cmd, slot)
            key = (cmd.client_id, cmd.seq)
            if key in self._waiting:
                del self._waiting[key]
                err = "stale_seq" if out.stale else ""
                self._results.append(
                    ProposalResult(cmd.client_id, cmd.seq, not out.stale, out.result, err)
                )

    def _take_snapshot(self) -> None:
        snap = Snapshot(self.applied, self.machine.snapshot())
        self.acceptor.install_snapshot(snap)
        for slot in [s for s in self.log if s <= snap.index]:
            del self.log[slot]

    def _confirmed_round(self, lead: Leadership) -> int:
        """Read-index confirmation counts in every configuration of the open slots: any
        leader that could supersede this one needs promises from a majority of one of them."""
        hi = max(lead.next_slot, self.first_unchosen)
        return min(
            lead.confirmed_round(members, self.id)
            for members in self.membership.between(self.first_unchosen, hi)
        )

    def _servable(self, lead: Leadership) -> bool:
        confirmed = self._confirmed_round(lead)
        return any(r.round <= confirmed and self.applied >= r.read_index for r in lead.reads)

    def _serve_reads(self, lead: Leadership) -> None:
        if not lead.reads:
            return
        confirmed = self._confirmed_round(lead)
        keep: list[PendingRead] = []
        for r in lead.reads:
            if r.round <= confirmed and self.applied >= r.read_index:
                value = self.machine.app.query(r.query)
                self._reads.append(ReadResult(r.read_id, True, value))
            else:
                keep.append(r)
        lead.reads = keep
