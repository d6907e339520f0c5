"""The peer wire format round-trips every message kind and refuses malformed frames."""

from __future__ import annotations

import msgspec
import pytest

from coordinator.paxos.errors import DecodeError
from coordinator.paxos.types import (
    Accept,
    Accepted,
    AcceptedEntry,
    Ballot,
    Batch,
    Command,
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
    SlotValue,
    Snapshot,
)
from coordinator.server.wire import decode, encode

B = Ballot(3, 2)
BATCH = Batch((Command("c1", 1, b"\x00payload"), Command("c2", 9, b"")))
MESSAGES: list[Message] = [
    Prepare(1, 2, B, 5),
    Promise(2, 1, B, 5, (AcceptedEntry(5, Ballot(2, 1), BATCH),), Snapshot(4, b"state")),
    Promise(2, 1, B, 5, (), None),
    Accept(1, 2, B, (SlotValue(6, BATCH), SlotValue(7, Batch())), 5),
    Accepted(2, 1, B, (6, 7)),
    Nack(2, 1, B, Ballot(4, 3)),
    Heartbeat(1, 2, B, 7, 3),
    HeartbeatAck(2, 1, B, 3, 8),
    Learn(1, 2, B, (SlotValue(6, BATCH),)),
    InstallSnapshot(1, 2, B, Snapshot(9, b"snap")),
    PreVote(1, 2, B),
    PreVoteReply(2, 1, B, True, Ballot(2, 1)),
    PreVoteReply(2, 1, B, True, Ballot(2, 1), learner=True),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xff", b"\x00", b"\x00\x93\x01\x02", encode(MESSAGES[0])[:-1], b"\x05garbage"],
)
def test_malformed_frames_raise_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


def test_a_pre_vote_reply_from_a_node_without_the_learner_field_decodes_as_a_voter() -> None:
    """Rolling upgrade (issue 17e added `PreVoteReply.learner`): an older node's reply has no
    such field and means what it always did."""
    tag = encode(PreVoteReply(2, 1, B, True, B))[:1]
    ballot = {"round": 3, "node": 2}
    old = msgspec.msgpack.encode(
        {"src": 2, "dst": 1, "ballot": ballot, "granted": True, "promised": ballot}
    )
    assert decode(tag + old) == PreVoteReply(2, 1, B, True, B, learner=False)
