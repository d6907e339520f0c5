"""Validation of a :class:`~pipeline.job.Job` and the serialisable spec the coordinator stores.

The spec is the only thing about a job that goes through Paxos, so it must say everything a
worker needs before importing any code: which topics (including the internal repartition
topics) to assign and checkpoint, and for each topic which stage of the pipeline to run.
Validation happens here, once, so that a bad job is refused at ``paxline submit`` with a
message naming the operator, rather than crashing workers later.

Stages: every ``key_by`` ends a stage. Stage 0 reads the job's source topic; stage ``n > 0``
reads ``paxline.{job}.repartition.{n}``, fed by the ``key_by`` that ended stage ``n-1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from coordinator.protocol import MAX_PARTITIONS, valid_topic
from pipeline.job import (
    DEFAULT_SETTINGS,
    Aggregate,
    Count,
    FlatMap,
    Job,
    JoinStream,
    JoinTable,
    KeyBy,
    Map,
    Operator,
    RabbitQueue,
    RabbitStream,
    Reduce,
    SessionSpec,
    SlidingSpec,
    Source,
    SpecError,
    ToFiles,
    ToKafka,
    ToRabbitMQ,
    ToRedis,
    Window,
    WindowSpec,
    amqp_url_problem,
    op_name,
    queue_problem,
)

__all__ = [
    "MAX_PARTITIONS",
    "SPEC_VERSION",
    "SpecError",
    "StagePlan",
    "build_spec",
    "describe_window",
    "label",
    "repartition_topic",
    "stages_of",
    "validate",
]

SPEC_VERSION = 1
_VIEW = re.compile(r"[A-Za-z0-9._:-]{1,200}")
_ENTRYPOINT = re.compile(r"[^\s:]+:[A-Za-z_][A-Za-z0-9_]*")
_STATEFUL = (Count, Reduce, Aggregate)
_KEEPS_STATE = (Count, Reduce, Aggregate, JoinTable, JoinStream)
_SINKS = (ToKafka, ToRedis, ToFiles, ToRabbitMQ)
#: URL schemes of the file sink (fsspec protocols); a plain path is a local directory. An object
#: store needs its fsspec package (s3fs, gcsfs, adlfs) installed on the workers.
FILE_SCHEMES = ("file", "webhdfs", "s3", "s3a", "gs", "gcs", "abfs", "az", "memory")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)")


def repartition_topic(job_name: str, stage: int) -> str:
    """Internal topic feeding ``stage`` (>= 1); created at submit time like a source."""
    return f"paxline.{job_name}.repartition.{stage}"


def label(index: int, op: object) -> str:
    """How errors and dead letters name an operator: its method and position in the chain."""
    return f"{op_name(op)}#{index}"


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage: the topic it reads and its operators (the ending key_by or sink apart)."""

    index: int
    topic: str
    partitions: int
    operators: tuple[tuple[int, Operator], ...]
    key_by: tuple[int, KeyBy] | None
    sink: tuple[int, ToKafka | ToRedis | ToFiles | ToRabbitMQ] | None
    #: decoder hint for values arriving in this stage: a source `value=` for stage 0, a class
    #: (or None for plain builtins) for repartitioned stages.
    value: Any
    #: a table feeder (issue 18): this stage reads a join_table()'s topic and forwards its
    #: rows into the repartition topic of stage ``feeds`` (pipeline/executor/joins.py)
    feeds: int | None = None
    join: tuple[int, JoinTable | JoinStream] | None = None

    @property
    def output_topic(self) -> str | None:
        if self.sink is not None and isinstance(self.sink[1], ToKafka):
            return self.sink[1].topic
        return None


def _topic_problem(topic: object, what: str) -> str | None:
    if not valid_topic(topic):
        return (
            f"{what} must be a Kafka topic name ([A-Za-z0-9._-], 1-249 chars, "
            f"not '.' or '..'), got {topic!r}"
        )
    return None


def describe_window(w: Window) -> str:
    """A window as the dashboard's job graph shows it, e.g. ``session(gap=30s)``."""

    def secs(ms: int) -> str:
        return f"{ms / 1000:g}s"

    spec = w.spec
    if isinstance(spec, SessionSpec):
        text = f"session(gap={secs(spec.gap_ms)}"
    elif isinstance(spec, SlidingSpec):
        text = f"sliding({secs(spec.size_ms)}"
    elif spec.hop_ms == spec.size_ms:
        text = f"tumbling({secs(spec.size_ms)}"
    else:
        text = f"hopping({secs(spec.size_ms)}, hop={secs(spec.hop_ms)}"
    if w.allowed_lateness_ms:
        text += f", lateness={secs(w.allowed_lateness_ms)}"
    if w.idle_timeout_ms is not None:
        text += f", idle={secs(w.idle_timeout_ms)}"
    return text + ")"


def _check_window(where: str, w: Window) -> None:
    """What the builders check, again for a Window built by hand (the spec must be sound)."""
    spec = w.spec
    sizes: list[tuple[str, object]]
    if isinstance(spec, WindowSpec):
        sizes = [("size", spec.size_ms), ("hop", spec.hop_ms)]
    elif isinstance(spec, SlidingSpec):
        sizes = [("size", spec.size_ms)]
    elif isinstance(spec, SessionSpec):
        sizes = [("gap", spec.gap_ms)]
    else:
        raise SpecError(
            f"{where}: expected tumbling(...), hopping(...), sliding(...) or session(gap=...), "
            f"got {type(spec).__name__}"
        )
    sizes.append(("allowed_lateness", w.allowed_lateness_ms))
    if w.idle_timeout_ms is not None:
        sizes.append(("idle_timeout", w.idle_timeout_ms))
    for name, v in sizes:
        low = 0 if name == "allowed_lateness" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SpecError(f"{where}: {name} must be a whole number of ms >= {low}, got {v!r}")
    if isinstance(spec, WindowSpec) and spec.hop_ms > spec.size_ms:
        raise SpecError(f"{where}: hop ({spec.hop_ms} ms) must not exceed size ({spec.size_ms} ms)")


def _check_files(where: str, sink: ToFiles) -> None:
    """The file sink's arguments; the URL's file system is reached only by workers."""
    url = sink.url
    if not isinstance(url, str) or not url.strip():
        raise SpecError(f"{where}: url must be a directory path or an fsspec URL, got {url!r}")
    m = _SCHEME.fullmatch(url)
    if m is not None:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme not in FILE_SCHEMES:
            raise SpecError(
                f"{where}: unsupported URL scheme {scheme!r} in {url!r}; "
                f"use a local path or one of {', '.join(s + '://' for s in FILE_SCHEMES)}"
            )
        if scheme == "webhdfs" and not rest.partition("/")[0]:
            raise SpecError(f"{where}: {url!r} names no namenode (webhdfs://host:port/path)")
        if not rest.strip("/") and scheme != "file":
            raise SpecError(f"{where}: {url!r} names no directory")
    if sink.format not in ("parquet", "jsonl"):
        raise SpecError(f"{where}: format must be 'parquet' or 'jsonl', got {sink.format!r}")
    if sink.roll not in ("minute", "hour", "day"):
        raise SpecError(f"{where}: roll must be 'minute', 'hour' or 'day', got {sink.roll!r}")
    n = sink.max_records
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError(f"{where}: max_records must be a positive integer, got {n!r}")


def _check_rabbitmq(where: str, sink: ToRabbitMQ, job: Job) -> None:
    """The RabbitMQ sink's arguments (issue 19), again for a sink built by hand, and its
    guarantee: publisher confirms make it at-least-once, and an exactly-once job would promise
    what a replay after a crash cannot keep (it publishes again)."""
    for what, problem in (("queue", queue_problem(sink.queue)),
                          ("url", amqp_url_problem(sink.url))):  # fmt: skip
        if problem:
            raise SpecError(f"{where}: {what} {problem}")
    if sink.value not in ("json", "str", "bytes"):
        raise SpecError(f"{where}: value must be 'json', 'str' or 'bytes', got {sink.value!r}")
    if sink.declare not in ("classic", "quorum", None):
        raise SpecError(
            f"{where}: declare must be 'classic', 'quorum' or None, got {sink.declare!r}"
        )
    if job.guarantee == "exactly-once":
        raise SpecError(
            f"{where}: a RabbitMQ sink is at-least-once (publisher confirms; a replay after a "
            "crash publishes again), so it cannot end an exactly-once job: use "
            "guarantee='at-least-once', or to_kafka()/to_redis()/to_files() for exactly-once"
        )


def _check_queue_source(job: Job, source: Source) -> None:
    """A RabbitMQ queue source (issue 19) is at-least-once only: a queue cannot be re-read from
    an offset, so there is nothing a transaction could commit atomically with the outputs."""
    origin = source.rabbitmq
    if not isinstance(origin, RabbitQueue):
        return
    where = label(0, source)
    for what, problem in (("queue", queue_problem(origin.queue)),
                          ("url", amqp_url_problem(origin.url))):  # fmt: skip
        if problem:
            raise SpecError(f"{where}: {what} {problem}")
    p = origin.prefetch
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise SpecError(f"{where}: prefetch must be an integer >= 1, got {p!r}")
    if job.guarantee == "exactly-once":
        raise SpecError(
            f"{where}: a RabbitMQ queue source is at-least-once only (messages are "
            "acknowledged after their checkpoint; a crash redelivers them): use "
            "guarantee='at-least-once', or source_rabbitmq_stream() for exactly-once"
        )


def _check_settings(job: Job) -> None:
    s = {**DEFAULT_SETTINGS, **job.extra_settings}
    for name in ("batch_size", "commit_interval_ms", "max_buffered_batches", "poll_timeout_ms"):
        v = s[name]
        low = 0 if name == "poll_timeout_ms" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SpecError(f"settings.{name} must be an integer >= {low}, got {v!r}")
    if s["state_backend"] not in ("redis", "memory"):
        raise SpecError(
            f"settings.state_backend must be 'redis' or 'memory', got {s['state_backend']!r}"
        )
    for name in ("consumer", "producer"):
        conf = s[name]
        if not isinstance(conf, dict):
            raise SpecError(f"settings.{name} must be a dict of Kafka client options")
        for k, v in conf.items():
            if not isinstance(k, str) or not isinstance(v, str | int | float | bool):
                raise SpecError(
                    f"settings.{name}[{k!r}] must map a string to a str/int/float/bool, "
                    f"got {type(v).__name__}"
                )


def stages_of(job: Job) -> list[StagePlan]:
    """Validate ``job`` and split it into stages; raises :class:`SpecError` naming the problem."""
    if not isinstance(job, Job):
        raise SpecError(f"expected a paxline Job, got {type(job).__name__}")
    ops = job.operators
    where = f"job {job.name!r}"
    if not ops or not isinstance(ops[0], Source):
        first = f"; it starts with {op_name(ops[0])}()" if ops else ""
        raise SpecError(f"{where} has no source{first}: start with .source(topic, partitions=N)")
    source = ops[0]
    problem = _topic_problem(source.topic, f"{label(0, source)}: topic")
    if problem:
        raise SpecError(problem)
    if source.partitions > MAX_PARTITIONS:
        raise SpecError(f"{label(0, source)}: partitions must be <= {MAX_PARTITIONS}")

    sinks = [(i, op) for i, op in enumerate(ops) if isinstance(op, _SINKS)]
    if not sinks:
        raise SpecError(
            f"{where} has no sink: end with .to_kafka(topic), .to_redis(view), .to_files(url) "
            "or .to_rabbitmq(queue, url=...)"
        )
    if len(sinks) > 1:
        names = " and ".join(label(i, op) for i, op in sinks)
        raise SpecError(f"{where} has two sinks ({names}); a job has exactly one")
    sink_index, sink = sinks[0]
    if sink_index != len(ops) - 1:
        after = ops[sink_index + 1]
        raise SpecError(
            f"{label(sink_index + 1, after)} comes after the sink {label(sink_index, sink)}; "
            "the sink must be the last operator"
        )
    if isinstance(sink, ToKafka):
        problem = _topic_problem(sink.topic, f"{label(sink_index, sink)}: topic")
        if problem:
            raise SpecError(problem)
        if sink.topic == source.topic:
            raise SpecError(
                f"{label(sink_index, sink)}: topic {sink.topic!r} is also the source; "
                "the job would consume its own output"
            )
    elif isinstance(sink, ToFiles):
        _check_files(label(sink_index, sink), sink)
    elif isinstance(sink, ToRabbitMQ):
        _check_rabbitmq(label(sink_index, sink), sink, job)
    else:
        if not isinstance(sink.view, str) or not _VIEW.fullmatch(sink.view):
            raise SpecError(
                f"{label(sink_index, sink)}: view must match [A-Za-z0-9._:-]{{1,200}}, "
                f"got {sink.view!r}"
            )
    problem = _topic_problem(job.dlq_topic, "dead_letter: topic")
    if problem:
        raise SpecError(problem)
    if job.dlq_topic == source.topic or (isinstance(sink, ToKafka) and job.dlq_topic == sink.topic):
        raise SpecError(f"dead_letter: topic {job.dlq_topic!r} is also the source or the sink")

    stages: list[StagePlan] = []
    stage_ops: list[tuple[int, Operator]] = []
    topic, partitions, value = source.topic, source.partitions, source.value
    typed = not isinstance(source.value, str)  # source class survives until a map/flat_map
    stateful: tuple[int, Operator] | None = None
    pending_window: tuple[int, Window] | None = None
    joins: list[tuple[int, str]] = []
    for i, op in enumerate(ops[1:], start=1):
        if isinstance(op, Source):
            raise SpecError(f"{label(i, op)}: a job reads exactly one source (first at source#0)")
        if pending_window is not None and not isinstance(op, _STATEFUL):
            wi, w = pending_window
            raise SpecError(
                f"{label(wi, w)} must be followed by count(), reduce() or aggregate(), "
                f"not {op_name(op)}()"
            )
        if isinstance(op, Map | FlatMap):
            typed = False
        if isinstance(op, JoinTable | JoinStream):
            if not isinstance(ops[i - 1], KeyBy):
                raise SpecError(
                    f"{label(i, op)} must directly follow a key_by(): the other side is "
                    "co-partitioned with the stream by that key"
                )
            problem = _topic_problem(op.topic, f"{label(i, op)}: topic")
            if problem:
                raise SpecError(problem)
            if op.partitions > MAX_PARTITIONS:
                raise SpecError(f"{label(i, op)}: partitions must be <= {MAX_PARTITIONS}")
            used = [source.topic, job.dlq_topic, *(t for _, t in joins)]
            if isinstance(sink, ToKafka):
                used.append(sink.topic)
            if op.topic in used:
                raise SpecError(
                    f"{label(i, op)}: topic {op.topic!r} is already the job's source, sink, "
                    "dead-letter or another joined topic"
                )
            joins.append((i, op.topic))
            stateful = (i, op)
            typed = False
        if isinstance(op, Window):
            _check_window(label(i, op), op)
        if isinstance(op, Window | Count | Reduce | Aggregate):
            if not stages:
                raise SpecError(f"{label(i, op)} needs a key_by() before it: state is kept per key")
            if stateful is not None and not (
                isinstance(stateful[1], Window) and isinstance(op, _STATEFUL)
            ):
                raise SpecError(
                    f"{label(i, op)} follows {label(*stateful)} without a key_by() in between"
                )
            stateful = (i, op)
            typed = False
            pending_window = (i, op) if isinstance(op, Window) else None
        if isinstance(op, KeyBy | ToKafka | ToRedis | ToFiles | ToRabbitMQ):
            key_by = (i, op) if isinstance(op, KeyBy) else None
            end = (i, op) if isinstance(op, ToKafka | ToRedis | ToFiles | ToRabbitMQ) else None
            stages.append(
                StagePlan(len(stages), topic, partitions, tuple(stage_ops), key_by, end, value)
            )
            stage_ops, stateful = [], None
            if isinstance(op, KeyBy):
                topic = repartition_topic(job.name, len(stages))
                problem = _topic_problem(topic, f"{label(i, op)}: repartition topic")
                if problem:
                    raise SpecError(problem)
                partitions = op.partitions or source.partitions
                if partitions > MAX_PARTITIONS:
                    raise SpecError(f"{label(i, op)}: partitions must be <= {MAX_PARTITIONS}")
                value = (
                    op.value_type
                    if op.value_type is not None
                    else (source.value if typed else None)
                )
            continue
        stage_ops.append((i, op))
    for st in list(stages):
        for i, op in st.operators:
            if isinstance(op, JoinTable | JoinStream):
                stages.append(
                    StagePlan(len(stages), op.topic, op.partitions, (), None, None, op.value,
                              feeds=st.index, join=(i, op))
                )  # fmt: skip
    _check_settings(job)
    _check_queue_source(job, source)
    if job.guarantee == "exactly-once":
        backend = {**DEFAULT_SETTINGS, **job.extra_settings}["state_backend"]
        if backend == "memory" and any(
            isinstance(op, _KEEPS_STATE) for st in stages for _, op in st.operators
        ):
            raise SpecError(
                "settings.state_backend='memory' cannot give exactly-once for a stateful job "
                "(state is lost on restart); use 'redis'"
            )
    return stages


def validate(job: Job) -> None:
    """Raise :class:`SpecError` naming the first problem with ``job``; return if it is fine."""
    stages_of(job)


def _server(url: str, default_port: int) -> str:
    """``host:port`` of a RabbitMQ URL, without its credentials."""
    parts = urlsplit(url)
    if parts.scheme == "amqps":
        default_port = 5671
    return f"{parts.hostname}:{parts.port or default_port}"


def build_spec(job: Job, entrypoint: str) -> dict[str, Any]:
    """The JSON-like dict the coordinator stores as ``JobSpec`` (same field names and shape).

    ``settings["stages"]`` tells a worker, for an assigned topic, which stage to run; the
    executor's :meth:`~pipeline.executor.Plan.stage_for_topic` reads the same information
    from the imported job, and the two must agree (the worker can assert it).
    """
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise SpecError("entrypoint is missing: pass 'path/to/file.py:attr' or 'module:attr'")
    if not _ENTRYPOINT.fullmatch(entrypoint) and not re.fullmatch(
        r"[A-Za-z]:[^\s:]+:[A-Za-z_][A-Za-z0-9_]*", entrypoint
    ):
        raise SpecError(
            f"entrypoint must look like 'path/to/file.py:attr' or 'module:attr', got {entrypoint!r}"
        )
    stages = stages_of(job)
    last = [st for st in stages if st.feeds is None][-1]
    assert last.sink is not None
    sink_op = last.sink[1]
    sink: dict[str, Any]
    if isinstance(sink_op, ToKafka):
        sink = {"kind": "kafka", "topic": sink_op.topic, "value": sink_op.value}
    elif isinstance(sink_op, ToFiles):
        sink = {"kind": "files", "url": sink_op.url, "format": sink_op.format,
                "roll": sink_op.roll, "max_records": sink_op.max_records}  # fmt: skip
    elif isinstance(sink_op, ToRabbitMQ):
        # issue 19: the server without the URL's credentials (the spec is readable through
        # the API); workers take the URL from the job they import
        sink = {"kind": "rabbitmq", "queue": sink_op.queue, "server": _server(sink_op.url, 5672),
                "value": sink_op.value}  # fmt: skip
    else:
        sink = {"kind": "redis", "view": sink_op.view}
    sink["dead_letter"] = job.dlq_topic
    stage_meta: list[dict[str, Any]] = []
    for st in stages:
        if st.join is not None and st.feeds is not None:
            output: dict[str, Any] = {
                "kind": "repartition",
                "topic": repartition_topic(job.name, st.feeds),
                "operator": label(*st.join),
            }
        elif st.key_by is not None:
            output = {
                "kind": "repartition",
                "topic": repartition_topic(job.name, st.index + 1),
                "operator": label(*st.key_by),
            }
        else:
            output = {**sink, "operator": label(*st.sink)} if st.sink else {}
            output.pop("dead_letter", None)
        windows = {
            label(i, op): describe_window(op) for i, op in st.operators if isinstance(op, Window)
        }
        idle = [op.idle_timeout_ms for _, op in st.operators if isinstance(op, Window)]
        stage_meta.append(
            {
                "stage": st.index,
                "topic": st.topic,
                "partitions": st.partitions,
                "operators": [label(i, op) for i, op in st.operators],
                "stateful": any(isinstance(op, _KEEPS_STATE) for _, op in st.operators),
                "output": output,
                # issue 18: window kinds for the dashboard's job graph; the idle timeout
                "windows": windows,
                "idle_timeout_ms": idle[0] if idle else None,
            }
        )
    first = job.operators[0]
    if isinstance(first, Source) and isinstance(first.rabbitmq, RabbitQueue):
        # issue 19: what stage 0 really reads, for the dashboard graph and `paxline jobs`
        stage_meta[0]["source"] = {
            "kind": "rabbitmq-queue",
            "queue": first.rabbitmq.queue,
            "server": _server(first.rabbitmq.url, 5672),
        }
    elif isinstance(first, Source) and isinstance(first.rabbitmq, RabbitStream):
        # issue 19: what stage 0 really reads, for the dashboard graph and `paxline jobs`;
        # the URL without its credentials (the spec is readable through the API)
        stage_meta[0]["source"] = {
            "kind": "rabbitmq-stream",
            "stream": first.rabbitmq.stream,
            "server": _server(first.rabbitmq.url, 5552),
        }
    settings: dict[str, Any] = {
        **{k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_SETTINGS.items()},
        **job.extra_settings,
        "spec_version": SPEC_VERSION,
        "dead_letter_topic": job.dlq_topic,
        "changelog": job.changelog,  # issue 16: workers log state changes unless False
        "stages": stage_meta,
        "topic_stage": {st.topic: st.index for st in stages},
    }
    return {
        "name": job.name,
        "entrypoint": entrypoint,
        "sources": [{"topic": st.topic, "partitions": st.partitions} for st in stages],
        "sink": sink,
        "guarantee": job.guarantee,
        "settings": settings,
    }
