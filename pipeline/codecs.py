"""Byte formats at the edges of a job: source values, sink values, repartition and state.

Formats, and why:

* source values: ``"bytes"`` (as is), ``"str"`` (UTF-8), ``"json"`` (orjson), or a class —
  dataclass / ``msgspec.Struct`` (msgspec's typed JSON decoder, which validates), pydantic
  model (``model_validate_json``), ``faust.Record`` subclass (``from_data``). Classes are
  recognised by duck typing, so pydantic and faust stay optional and are never imported.
* sink values: ``"json"`` (orjson; Structs, pydantic and faust records are converted to
  builtins first), ``"str"`` (``str(v)`` as UTF-8), ``"bytes"`` (must already be bytes).
* repartition topics and keyed state: MessagePack via msgspec — compact, fast, and free of
  pickle, so a topic or a Redis key never holds executable payloads. A value msgpack cannot
  represent is an error naming its type, raised while processing the record (the record is
  dead-lettered), never a silent ``repr``.

Everything here is pure (no I/O), because the executor depends on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from pipeline.errors import PipelineError

__all__ = [
    "CodecError",
    "decode_packed",
    "encode_packed",
    "json_default",
    "sink_encoder",
    "typed_converter",
    "value_decoder",
    "value_kind",
]


class CodecError(PipelineError, ValueError):
    """A value format that paxline cannot decode or encode; the message says what would work."""


def value_kind(value: Any) -> str:
    """Classify a ``source(value=...)`` argument: bytes/str/json/struct/pydantic/faust."""
    if isinstance(value, str):
        if value in ("bytes", "str", "json"):
            return value
        raise CodecError(f"value must be 'bytes', 'str', 'json' or a class, got {value!r}")
    if isinstance(value, type):
        if any(
            c.__name__ == "Record" and c.__module__.split(".")[0] == "faust" for c in value.__mro__
        ):
            return "faust"
        if issubclass(value, msgspec.Struct) or dataclasses.is_dataclass(value):
            return "struct"
        if callable(getattr(value, "model_validate_json", None)):
            return "pydantic"
    raise CodecError(
        "value must be 'bytes', 'str', 'json', a dataclass, a msgspec.Struct, a pydantic model "
        f"or a faust.Record class, got {value!r}"
    )


def value_decoder(value: Any) -> Callable[[Any], Any]:
    """The function turning a Kafka value (``bytes | None``) into the user's value."""
    kind = value_kind(value)
    if kind == "bytes":
        return _identity
    if kind == "str":
        return _utf8
    if kind == "json":
        return orjson.loads
    if kind == "struct":
        return msgspec.json.Decoder(value).decode
    if kind == "pydantic":
        decode: Callable[[Any], Any] = value.model_validate_json
        return decode
    from_data: Callable[[Any], Any] = value.from_data
    return lambda raw: from_data(orjson.loads(raw))


def typed_converter(value_type: Any) -> Callable[[Any], Any]:
    """Rebuild an instance of ``value_type`` from msgpack builtins (after a repartition hop)."""
    kind = value_kind(value_type)
    if kind == "struct":
        return lambda obj: msgspec.convert(obj, value_type)
    if kind == "pydantic":
        validate: Callable[[Any], Any] = value_type.model_validate
        return validate
    if kind == "faust":
        from_data: Callable[[Any], Any] = value_type.from_data
        return from_data
    raise CodecError(f"value_type must be a class, got {value_type!r}")


def _identity(raw: Any) -> Any:
    return raw


def _utf8(raw: bytes) -> str:
    return raw.decode("utf-8")


def _to_builtins(obj: Any) -> Any:
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    rep = getattr(obj, "to_representation", None)
    if callable(rep):
        return rep()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(
        f"values of type {type(obj).__qualname__} cannot be serialised; use JSON-like "
        "values, a dataclass, a msgspec.Struct or a pydantic model"
    )


def json_default(obj: Any) -> Any:
    """orjson ``default=`` hook: typed records become JSON builtins, anything else is an error."""
    return _to_builtins(obj)


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=_to_builtins)


def _str(value: Any) -> bytes:
    return (value if type(value) is str else str(value)).encode("utf-8")


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"to_kafka(value='bytes') needs bytes, got {type(value).__qualname__}")


def sink_encoder(kind: str) -> Callable[[Any], bytes]:
    """Encoder for ``to_kafka(value=kind)`` and (``"json"``) for Redis view values."""
    if kind == "json":
        return _json
    if kind == "str":
        return _str
    if kind == "bytes":
        return _bytes
    raise CodecError(f"sink value format must be 'json', 'str' or 'bytes', got {kind!r}")


_packer = msgspec.msgpack.Encoder(enc_hook=_to_builtins)

#: MessagePack encoding used on repartition topics (``[ts_ms, value]``) and for state values.
encode_packed: Callable[[Any], bytes] = _packer.encode
decode_packed: Callable[[bytes], Any] = msgspec.msgpack.Decoder().decode
