"""The metadata machine as the Paxos core's `StateMachine`: bytes in, bytes out.

Many commands share one Paxos slot (batching), but fencing epochs must be unique per
assignment, so the machine is driven by a command index (one per applied command, strictly
increasing, identical on every replica) rather than by the slot.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from coordinator.metadata import MetadataMachine

__all__ = ["MetadataApp", "Query", "encode_query"]


class Query(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A read served by the leader after read-index confirmation."""

    op: Literal["jobs", "job", "workers", "worker", "assignment", "heartbeat", "offsets", "status"]
    name: str = ""


_query_decoder = msgspec.json.Decoder(Query)
_json = msgspec.json.Encoder()


def encode_query(op: str, name: str = "") -> bytes:
    return _json.encode({"op": op, "name": name})


class MetadataApp:
    def __init__(self) -> None:
        self.machine = MetadataMachine()

    def apply(self, command: bytes) -> bytes:
        return self.machine.apply(command, self.machine.applied_slot + 1)

    def query(self, query: bytes) -> bytes:
        """JSON of the answer; `null` for an unknown job. Malformed queries never reach
        here (the API builds them), but answer `null` rather than raise inside the core."""
        try:
            q = _query_decoder.decode(query)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b"null"
        m = self.machine
        match q.op:
            case "jobs":
                return _json.encode(m.jobs())
            case "job":
                return _json.encode(m.job(q.name))
            case "workers":
                return _json.encode(m.workers())
            case "worker":
                return _json.encode(m.worker(q.name))
            case "assignment":
                return _json.encode(m.assignment(q.name))
            case "heartbeat":
                # Registration and assignment of one worker from one state, for heartbeats.
                return _json.encode(
                    {"worker": m.worker(q.name), "assignment": m.assignment(q.name)}
                )
            case "offsets":
                return _json.encode(m.offsets(q.name))
            case _:
                return _json.encode(m.status())

    def snapshot(self) -> bytes:
        return self.machine.snapshot()

    def restore(self, data: bytes) -> None:
        self.machine.restore(data)
