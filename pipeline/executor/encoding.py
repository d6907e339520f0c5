"""Where a stage meets bytes: decoding its input records, encoding what its last operator emits.

The byte formats themselves are in :mod:`pipeline.codecs`; this module applies them to a
batch. It owns the one format the executor defines, the repartition record: the key as UTF-8
(the next stage's partition and aggregation key) and the value as MessagePack
``(event time ms, value)``, because the next stage's windows need the original event time.
A stage ends in one of five ways (its ``Output``): a ``key_by`` that repartitions, a Kafka
sink, a Redis view, files or a RabbitMQ queue (the last two leave the batch as outputs under a
marker topic the worker takes them by).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.codecs import (
    decode_packed,
    encode_packed,
    json_default,
    sink_encoder,
    typed_converter,
    value_decoder,
)
from pipeline.executor.batch import BatchRun, prune
from pipeline.executor.columns import FAILED, col_map
from pipeline.executor.provenance import stamp, stamp_origin
from pipeline.executor.records import FILES_TOPIC, RABBITMQ_TOPIC, InRecord, OutRecord
from pipeline.job import Job, RabbitQueue, Source, ToFiles, ToKafka, ToRabbitMQ, ToRedis
from pipeline.spec import StagePlan, label, repartition_topic

__all__ = ["Input", "Output", "key_str"]


def key_str(key: Any) -> str:
    """Keys are strings everywhere (state keys, view keys, Kafka keys as UTF-8)."""
    if type(key) is str:
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8")
    if key is None:
        raise TypeError("key_by returned None; every record needs a key")
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    return orjson.dumps(key, option=orjson.OPT_SORT_KEYS, default=json_default).decode("utf-8")


class Input:
    """Decodes a stage's records: source values for stage 0, repartition records after it."""

    __slots__ = ("converter", "decoder", "label")

    def __init__(self, job: Job, plan: StagePlan) -> None:
        self.label = (
            "source#0" if plan.index == 0 else f"decode:{repartition_topic(job.name, plan.index)}"
        )
        self.decoder = value_decoder(plan.value) if plan.index == 0 else None
        self.converter = (
            typed_converter(plan.value) if plan.index > 0 and plan.value is not None else None
        )

    def decode(self, run: BatchRun) -> tuple[list[int], list[Any], list[Any], list[int]]:
        """Values per record plus per-record keys and timestamps (looked up by origin)."""
        records = run.records
        if self.decoder is not None:
            vals, errors = col_map(self.decoder, [r.value for r in records])
            keys: list[Any] = [r.key for r in records]
            stamps = [r.timestamp_ms for r in records]
        else:
            converter = self.converter

            def unpack(r: InRecord) -> tuple[str, int, Any]:
                if r.key is None:
                    raise ValueError("repartition record has no key")
                if r.value is None:
                    raise ValueError("repartition record has no value")
                ts, value = decode_packed(r.value)
                if converter is not None:
                    value = converter(value)
                return r.key.decode("utf-8"), ts, value

            triples, errors = col_map(unpack, records)
            keys = [t[0] if t is not FAILED else None for t in triples]
            stamps = [t[1] if t is not FAILED else 0 for t in triples]
            vals = [t[2] if t is not FAILED else None for t in triples]
        orig = list(range(len(records)))
        if errors:
            for j, exc in errors:
                note = " (record has no value)" if records[j].value is None else ""
                run.fail(j, exc, self.label, note)
            orig, vals = prune(run, orig, vals)
        return orig, vals, keys, stamps


_JSON = sink_encoder("json")  # Redis view values are JSON


@dataclass(slots=True)
class Output:
    """How a stage ends: ``kind`` is "repartition", "kafka", "redis", "files" or "rabbitmq"."""

    kind: str
    label: str
    topic: str | None  # the repartition or Kafka sink topic; None for a Redis view
    key_fn: Callable[[Any], Any] | None = None  # key_by's function, when repartitioning
    encode: Callable[[Any], bytes] = _JSON
    #: provenance of repartitioned records; without a position for a RabbitMQ queue source
    stamp: Callable[[InRecord, int], tuple[tuple[str, bytes], ...]] = stamp

    @classmethod
    def of(cls, job: Job, plan: StagePlan) -> Output:
        if plan.key_by is not None:
            ki, kop = plan.key_by
            topic = repartition_topic(job.name, plan.index + 1)
            first = job.operators[0]
            queue = (plan.index == 0 and isinstance(first, Source)
                     and isinstance(first.rabbitmq, RabbitQueue))  # fmt: skip
            return cls("repartition", label(ki, kop), topic, key_fn=kop.fn,
                       stamp=stamp_origin if queue else stamp)  # fmt: skip
        assert plan.sink is not None
        si, sop = plan.sink
        if isinstance(sop, ToKafka):
            return cls("kafka", label(si, sop), sop.topic, encode=sink_encoder(sop.value))
        if isinstance(sop, ToFiles):  # JSON values for the worker's file writer (issue 18)
            return cls("files", label(si, sop), FILES_TOPIC)
        if isinstance(sop, ToRabbitMQ):  # encoded values for the worker's publisher (issue 19)
            return cls("rabbitmq", label(si, sop), RABBITMQ_TOPIC, encode=sink_encoder(sop.value))
        assert isinstance(sop, ToRedis)
        return cls("redis", label(si, sop), None)

    def columns(
        self, run: BatchRun, orig: list[int], vals: list[Any], keys: list[Any], stamps: list[int]
    ) -> None:
        """Encode a stateless stage's surviving values into ``run``'s outputs or views."""
        records = run.records
        where = self.label
        if self.key_fn is not None:
            key_fn = self.key_fn
            new_keys, errors = col_map(lambda v: key_str(key_fn(v)), vals)
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            payloads, errors = col_map(
                encode_packed, [(stamps[o], v) for o, v in zip(orig, vals, strict=True)]
            )
            for j, exc in errors:
                run.fail(orig[j], exc, where, f" (value crossing {self.topic})")
            topic = self.topic
            assert topic is not None
            failed = run.failed
            stamp = self.stamp
            # Provenance lets a stateful downstream stage drop records this stage produces
            # twice under at-least-once (see pipeline.executor.provenance).
            seen: dict[int, int] = {}
            out: list[OutRecord] = []
            for o, k, p in zip(orig, new_keys, payloads, strict=True):
                if o in failed:
                    continue
                n = seen.get(o, 0)
                seen[o] = n + 1
                out.append(OutRecord(topic, k.encode("utf-8"), p, stamp(records[o], n)))
            run.outputs = out
            return
        if self.kind == "redis":
            views: list[tuple[int, str, bytes | None]] = []
            encode = self.encode
            for o, v in zip(orig, vals, strict=True):
                try:
                    k = keys[o]
                    if k is None:
                        raise ValueError("record has no key for the Redis view")
                    sk = k if type(k) is str else k.decode("utf-8")
                    views.append((o, sk, None if v is None else encode(v)))
                except Exception as view_exc:
                    run.fail(o, view_exc, where)
            failed = run.failed
            run.views = [(k, b) for o, k, b in views if o not in failed]
            return
        encoded, errors = col_map(self.encode, vals)
        topic = self.topic
        assert topic is not None
        if errors:
            for j, exc in errors:
                run.fail(orig[j], exc, where)
            failed = run.failed
            run.outputs = [
                OutRecord(topic, records[o].key, e)
                for o, e in zip(orig, encoded, strict=True)
                if o not in failed
            ]
        else:
            run.outputs = [
                OutRecord(topic, records[o].key, e) for o, e in zip(orig, encoded, strict=True)
            ]

    def one(self, run: BatchRun, key: str, values: list[Any], ts: int) -> None:
        """Encode an aggregation's emissions for ``key``; an exception carries
        ``__paxline_where__`` (this output's operator) so the record's rollback can name it."""
        try:
            for v in values:
                if self.key_fn is not None:
                    topic = self.topic
                    assert topic is not None
                    new_key = key_str(self.key_fn(v))
                    run.outputs.append(
                        OutRecord(topic, new_key.encode("utf-8"), encode_packed((ts, v)))
                    )
                elif self.kind == "redis":
                    run.views.append((key, None if v is None else self.encode(v)))
                else:
                    topic = self.topic
                    assert topic is not None
                    run.outputs.append(OutRecord(topic, key.encode("utf-8"), self.encode(v)))
        except Exception as exc:
            exc.__paxline_where__ = self.label  # type: ignore[attr-defined]
            raise
