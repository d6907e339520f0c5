"""Provenance of repartitioned records, and the de-duplication it allows.

Under at-least-once, a stage that crashes after producing to a repartition topic but before
its checkpoint re-produces those records on replay, and a zombie owner may produce a range a
second time. Every record a stateless stage sends through a repartition topic therefore
carries `paxline.src = "{upstream partition}:{offset}:{n}"` (n numbers the outputs of one
input record). Each upstream partition's records reach a repartition partition in order, so
a stateful downstream stage keeps, per upstream partition, the highest position it has
applied - in the same atomic state write as the batch - and drops anything at or below it.
That is what lets Redis state count each input record exactly once even when the Kafka topics
in between hold duplicates.

They also carry `paxline.origin = "{topic}:{partition}:{offset}"`, the user's source record
the value came from, copied from stage to stage, so that a record that fails in a later stage
is dead-lettered naming the record an operator can look up, not an internal repartition
offset (issue 14, item 8). Records an aggregation emits have no single source record and
carry no origin; their dead letters name the repartition record.

Pure: no I/O. Stamping happens where a stage encodes its repartition output
(:mod:`pipeline.executor.encoding`); the worker runs de-duplication before a downstream
stage's batch, because the high-water marks live in that stage's state.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.executor.records import InRecord, StateAccess

__all__ = ["ORIGIN_HEADER", "SRC_HEADER", "dedup", "origin", "stamp", "stamp_origin"]

SRC_HEADER = "paxline.src"
ORIGIN_HEADER = "paxline.origin"
_PREFIX = "paxline.hw:"


def _origin_bytes(record: InRecord) -> bytes:
    for name, value in record.headers:
        if name == ORIGIN_HEADER:
            return value
    return b"%s:%d:%d" % (record.topic.encode(), record.partition, record.offset)


def stamp(record: InRecord, n: int) -> tuple[tuple[str, bytes], ...]:
    return (
        (SRC_HEADER, b"%d:%d:%d" % (record.partition, record.offset, n)),
        (ORIGIN_HEADER, _origin_bytes(record)),
    )


def stamp_origin(record: InRecord, n: int) -> tuple[tuple[str, bytes], ...]:
    """The origin only, no position: for records read from a RabbitMQ queue (issue 19), whose
    virtual offsets number one subscription's deliveries and restart at the resume offset on
    the next, so the same position may name another message after a redelivery. Without a
    position nothing is dropped as a duplicate (at-least-once: counted again, never lost)."""
    return ((ORIGIN_HEADER, _origin_bytes(record)),)


def origin(record: InRecord) -> tuple[str, int, int]:
    """The user's source record `record` came from: its origin header, else itself."""
    for name, value in record.headers:
        if name == ORIGIN_HEADER:
            try:
                topic, part, off = value.decode().rsplit(":", 2)
                return topic, int(part), int(off)
            except ValueError:
                break  # a damaged header: name the record itself
    return record.topic, record.partition, record.offset


def _position(record: InRecord) -> tuple[int, int, int] | None:
    for name, value in record.headers:
        if name == SRC_HEADER:
            part, off, n = value.split(b":")
            return int(part), int(off), int(n)
    return None


def dedup(
    records: Sequence[InRecord], state: StateAccess
) -> tuple[list[InRecord], dict[str, bytes | None]]:
    """Records not applied before, and the high-water writes to apply with them."""
    positions = [_position(r) for r in records]
    uppers = sorted({p[0] for p in positions if p is not None})
    if not uppers:
        return list(records), {}
    keys = [f"{_PREFIX}{u}" for u in uppers]
    high: dict[int, tuple[int, int]] = {}
    got = state.get_many(keys)
    for u, key in zip(uppers, keys, strict=True):
        raw = got.get(key)  # by key: a reader need not answer in the order asked
        if raw is not None:
            off, n = raw.split(b":")
            high[u] = (int(off), int(n))
    kept: list[InRecord] = []
    changed: set[int] = set()
    for r, pos in zip(records, positions, strict=True):
        if pos is None:
            kept.append(r)
            continue
        upper, at = pos[0], (pos[1], pos[2])
        if upper in high and at <= high[upper]:
            continue  # produced twice upstream: already applied
        high[upper] = at
        changed.add(upper)
        kept.append(r)
    writes: dict[str, bytes | None] = {f"{_PREFIX}{u}": b"%d:%d" % high[u] for u in sorted(changed)}
    return kept, writes
