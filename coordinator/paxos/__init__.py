"""Multi-Paxos core, sans I/O: feed it messages and ticks, drain `Ready`s.

See `node` for the driver contract and `storage` for what must be durable.
"""

from coordinator.paxos.application import SessionMachine, StateMachine
from coordinator.paxos.errors import ConfigError, DecodeError, PaxosError
from coordinator.paxos.node import Node, NodeConfig, RandomSource, Role
from coordinator.paxos.storage import MemoryStorage, Storage
from coordinator.paxos.types import (
    NOOP,
    Accept,
    Accepted,
    AcceptedEntry,
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
    PersistUpdate,
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

__all__ = [
    "NOOP",
    "Accept",
    "Accepted",
    "AcceptedEntry",
    "Ballot",
    "Batch",
    "Command",
    "ConfigError",
    "DecodeError",
    "DurableState",
    "Heartbeat",
    "HeartbeatAck",
    "InstallSnapshot",
    "Learn",
    "MemoryStorage",
    "Message",
    "Nack",
    "Node",
    "NodeConfig",
    "PaxosError",
    "PersistUpdate",
    "PreVote",
    "PreVoteReply",
    "Prepare",
    "Promise",
    "ProposalResult",
    "RandomSource",
    "ReadResult",
    "Ready",
    "Role",
    "SessionMachine",
    "SlotValue",
    "Snapshot",
    "StateMachine",
    "Storage",
]
