"""The record a dead letter becomes: what an operator needs to find and replay the input.

Headers name the failure (`paxline.error`, `paxline.stage`) and the user's source record
(`paxline.source.topic`, `.partition`, `.offset`), which for a later stage is the record
the repartitioned value came from (:func:`pipeline.executor.provenance.origin`), not the
internal repartition record; that one is named too (`paxline.record.*`). The value is what
the failing stage was given: the source record's bytes as they were, or for a repartition
record its value as JSON instead of the internal MessagePack `(event time, value)` pair
(issue 14, item 8). Pure: the worker's producers only send what this returns.
"""

from __future__ import annotations

import re

import orjson

from pipeline.codecs import decode_packed, json_default
from pipeline.executor.provenance import SRC_HEADER, origin
from pipeline.executor.records import DeadLetter, InRecord, OutRecord

__all__ = ["dead_letter_record"]

_REPARTITION = re.compile(r"paxline\..+\.repartition\.\d+")


def _internal(record: InRecord) -> bool:
    return _REPARTITION.fullmatch(record.topic) is not None or any(
        name == SRC_HEADER for name, _ in record.headers
    )


def _readable(value: bytes | None) -> bytes:
    """A repartition value as JSON; bytes that do not decode are kept as they are."""
    if value is None:
        return b""
    try:
        _ts, decoded = decode_packed(value)
        return orjson.dumps(decoded, default=json_default)
    except Exception:  # damaged or not JSON-representable: the raw bytes are all there is
        return value


def dead_letter_record(topic: str, dl: DeadLetter) -> OutRecord:
    r = dl.record
    src_topic, src_partition, src_offset = origin(r)
    headers: list[tuple[str, bytes]] = [
        ("paxline.error", dl.error.encode()[:4096]),
        ("paxline.stage", dl.stage.encode()),
        ("paxline.source.topic", src_topic.encode()),
        ("paxline.source.partition", str(src_partition).encode()),
        ("paxline.source.offset", str(src_offset).encode()),
    ]
    value = r.value or b""
    if _internal(r):
        headers += [
            ("paxline.record.topic", r.topic.encode()),
            ("paxline.record.partition", str(r.partition).encode()),
            ("paxline.record.offset", str(r.offset).encode()),
        ]
        value = _readable(r.value)
    headers += r.headers
    return OutRecord(topic, r.key, value, tuple(headers))
