"""Wire format for messages: compact JSON with base64 for bytes, validated strictly on decode.

JSON keeps frames debuggable with standard tools; the decoder checks every field's type so a
malformed or hostile frame becomes a `DecodeError` rather than a crash deep inside the core.
Transports add framing and authentication around these bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any

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

__all__ = ["MAX_FRAME", "decode", "encode"]

MAX_FRAME = 64 * 1024 * 1024

_MESSAGES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Prepare,
        Promise,
        Accept,
        Accepted,
        Nack,
        Heartbeat,
        HeartbeatAck,
        Learn,
        InstallSnapshot,
    )
}
_RECORDS = (Ballot, Batch, Command, SlotValue, AcceptedEntry, Snapshot)
_HINTS: dict[type[Any], dict[str, Any]] = {
    cls: typing.get_type_hints(cls) for cls in (*_MESSAGES.values(), *_RECORDS)
}


def encode(msg: Message) -> bytes:
    obj = _to_json(msg)
    assert isinstance(obj, dict)
    obj["t"] = type(msg).__name__
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(frame: bytes) -> Message:
    if len(frame) > MAX_FRAME:
        raise DecodeError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError("frame is not a JSON object")
    tag = obj.pop("t", None)
    cls = _MESSAGES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {tag!r}")
    msg = _from_json(cls, obj, tag)
    return typing.cast(Message, msg)


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    return value


def _from_json(tp: Any, raw: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_json(inner, raw, path)
    if origin is tuple:
        (item, _) = typing.get_args(tp)
        if not isinstance(raw, list):
            raise DecodeError(f"{path}: expected a list")
        return tuple(_from_json(item, v, f"{path}[{i}]") for i, v in enumerate(raw))
    if tp is int:
        if type(raw) is not int or raw < 0:
            raise DecodeError(f"{path}: expected a non-negative integer")
        return raw
    if tp is bool:
        if type(raw) is not bool:
            raise DecodeError(f"{path}: expected a boolean")
        return raw
    if tp is str:
        if not isinstance(raw, str):
            raise DecodeError(f"{path}: expected a string")
        return raw
    if tp is bytes:
        if not isinstance(raw, str):
            raise DecodeError(f"{path}: expected base64 text")
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"{path}: bad base64") from exc
    hints = _HINTS.get(tp)
    if hints is None:
        raise DecodeError(f"{path}: unsupported type {tp!r}")  # pragma: no cover
    if not isinstance(raw, dict):
        raise DecodeError(f"{path}: expected an object")
    if set(raw) != set(hints):
        raise DecodeError(f"{path}: fields {sorted(raw)} != {sorted(hints)}")
    kwargs = {name: _from_json(hint, raw[name], f"{path}.{name}") for name, hint in hints.items()}
    return tp(**kwargs)
