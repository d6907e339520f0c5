"""Every message survives encode/decode unchanged; malformed frames raise DecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.paxos.codec import decode, encode
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
    Promise,
    SlotValue,
    Snapshot,
)

nat = st.integers(min_value=0, max_value=2**40)
ballots = st.builds(Ballot, nat, nat)
commands = st.builds(Command, st.text(max_size=8), nat, st.binary(max_size=32))
batches = st.builds(Batch, st.lists(commands, max_size=4).map(tuple))
slot_values = st.builds(SlotValue, nat, batches)
snapshots = st.builds(Snapshot, nat, st.binary(max_size=64))
entries = st.lists(slot_values, max_size=4).map(tuple)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prepare, nat, nat, ballots, nat),
    st.builds(
        Promise,
        nat,
        nat,
        ballots,
        nat,
        st.lists(st.builds(AcceptedEntry, nat, ballots, batches), max_size=3).map(tuple),
        st.none() | snapshots,
    ),
    st.builds(Accept, nat, nat, ballots, entries, nat),
    st.builds(Accepted, nat, nat, ballots, st.lists(nat, max_size=5).map(tuple)),
    st.builds(Nack, nat, nat, ballots, ballots),
    st.builds(Heartbeat, nat, nat, ballots, nat, nat),
    st.builds(HeartbeatAck, nat, nat, ballots, nat, nat),
    st.builds(Learn, nat, nat, ballots, entries),
    st.builds(InstallSnapshot, nat, nat, ballots, snapshots),
)


@given(messages)
def test_roundtrip(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"t":"Nope"}',
        b'{"src":1}',
        b'{"t":"Prepare","src":1,"dst":2,"ballot":{"round":1,"node":1}}',  # missing field
        b'{"t":"Prepare","src":1,"dst":2,"ballot":{"round":1,"node":1},"from_slot":-1}',
        b'{"t":"Prepare","src":true,"dst":2,"ballot":{"round":1,"node":1},"from_slot":1}',
        b'{"t":"Prepare","src":1,"dst":2,"ballot":[1,1],"from_slot":1}',
        b'{"t":"Prepare","src":1,"dst":2,"ballot":{"round":1,"node":1},"from_slot":1,"x":0}',
        b'{"t":"InstallSnapshot","src":1,"dst":2,"ballot":{"round":1,"node":1},'
        b'"snapshot":{"index":1,"data":"!!notbase64"}}',
        b'{"t":"Accepted","src":1,"dst":2,"ballot":{"round":1,"node":1},"slots":"12"}',
    ],
)
def test_malformed_frames_are_rejected_with_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(frame: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(frame)
