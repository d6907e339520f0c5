"""The user-facing dataflow API: build a job by chaining operators on a :class:`Job`.

A job is a plain value. Every builder method returns a *new* job, so a half-built pipeline can
be shared and extended without surprises, and two workers that import the same module get
equal jobs. Builders check their own arguments at once (so the traceback points at the bad
line); whole-pipeline rules (one source, one sink, stateful operators after ``key_by``) are
checked by :func:`pipeline.spec.validate`, which :func:`pipeline.spec.build_spec` (at submit) and
the executor call; this module does not import it, so the two do not form a cycle.

Time units: window sizes and ``allowed_lateness`` are given in seconds (floats allowed) and
stored as integer milliseconds; event timestamps are epoch **milliseconds** (``int``), both
from the ``timestamp=`` function and from the Kafka record timestamp used by default.

Jobs are referenced by import path (``examples/wordcount.py:job`` or
``examples.wordcount:job``) because the code ships with the deployment, never as uploaded
bytes; :func:`load_job` resolves both forms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from coordinator.protocol import GUARANTEES, JOB_NAME, Guarantee
from pipeline.errors import PipelineError
from pipeline.urls import shown

__all__ = [
    "DEFAULT_SETTINGS",
    "Aggregate",
    "AnyWindowSpec",
    "Count",
    "FileFormat",
    "FileRoll",
    "Filter",
    "FlatMap",
    "Guarantee",
    "Job",
    "JoinStream",
    "JoinTable",
    "KeyBy",
    "Map",
    "Operator",
    "RabbitQueue",
    "RabbitStream",
    "Reduce",
    "SessionSpec",
    "SinkValue",
    "SlidingSpec",
    "Source",
    "SpecError",
    "ToFiles",
    "ToKafka",
    "ToRabbitMQ",
    "ToRedis",
    "Window",
    "WindowSpec",
    "hopping",
    "session",
    "sliding",
    "tumbling",
]

SinkValue = Literal["json", "str", "bytes"]


#: Worker tuning knobs with their defaults; ``Job.settings`` rejects unknown names so a typo
#: is an error at submit time rather than a silently ignored setting in production.
DEFAULT_SETTINGS: Mapping[str, Any] = {
    "batch_size": 500,
    "commit_interval_ms": 1000,
    "poll_timeout_ms": 100,
    "max_buffered_batches": 4,
    "state_backend": "redis",
    "consumer": {},
    "producer": {},
}


class SpecError(PipelineError, ValueError):
    """A job or one of its arguments is invalid; the message names the field or operator."""


# --------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Event-time window geometry in milliseconds; tumbling windows have ``hop == size``."""

    size_ms: int
    hop_ms: int

    @property
    def kind(self) -> str:
        return "tumbling" if self.hop_ms == self.size_ms else "hopping"

    def starts(self, ts: int) -> list[int]:
        """Starts of every window containing ``ts``, oldest first (deterministic order)."""
        last = ts - ts % self.hop_ms
        first_excl = ts - self.size_ms
        out = []
        start = last
        while start > first_excl:
            out.append(start)
            start -= self.hop_ms
        out.reverse()
        return out


@dataclass(frozen=True, slots=True)
class SlidingSpec:
    """One window per record: ``[t - size, t]`` (both ends inclusive) ending at the record's
    event time ``t``, per key; records of a key with equal times share one window."""

    size_ms: int

    @property
    def kind(self) -> str:
        return "sliding"


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Per key, records less than ``gap`` apart form one session ``[first, last + gap)``."""

    gap_ms: int

    @property
    def kind(self) -> str:
        return "session"


AnyWindowSpec = WindowSpec | SlidingSpec | SessionSpec


def _duration_ms(what: str, seconds: float, milliseconds: int, *, allow_zero: bool) -> int:
    for name, v in (("seconds", seconds), ("milliseconds", milliseconds)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{what}: {name} must be a finite number, got {v!r}")
    total = seconds * 1000 + milliseconds
    ms = round(total)
    if ms < 0 or (ms == 0 and not allow_zero):
        raise SpecError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, got {total!r} ms")
    if abs(total - ms) > 1e-6:
        raise SpecError(f"{what} must be a whole number of milliseconds, got {total!r} ms")
    return ms


def tumbling(seconds: float = 0, *, milliseconds: int = 0) -> WindowSpec:
    """Fixed, non-overlapping windows ``[k*size, (k+1)*size)``."""
    size = _duration_ms("tumbling window size", seconds, milliseconds, allow_zero=False)
    return WindowSpec(size, size)


def hopping(
    seconds: float = 0,
    *,
    hop: float = 0,
    milliseconds: int = 0,
    hop_milliseconds: int = 0,
) -> WindowSpec:
    """Overlapping windows of ``seconds`` that start every ``hop`` seconds.

    ``hop`` need not divide the size, but it may not exceed it: records falling between
    windows would be silently dropped, which is never what a user means.
    """
    size = _duration_ms("hopping window size", seconds, milliseconds, allow_zero=False)
    step = _duration_ms("hopping window hop", hop, hop_milliseconds, allow_zero=False)
    if step > size:
        raise SpecError(f"hopping window hop ({step} ms) must not exceed its size ({size} ms)")
    return WindowSpec(size, step)


def sliding(seconds: float = 0, *, milliseconds: int = 0) -> SlidingSpec:
    """Windows that slide with the records: each record at event time ``t`` ends a window
    ``[t - size, t]`` over its key's records, emitted once the watermark passes ``t``."""
    return SlidingSpec(_duration_ms("sliding window size", seconds, milliseconds, allow_zero=False))


def session(gap: float = 0, *, gap_milliseconds: int = 0) -> SessionSpec:
    """Session windows: a key's records less than ``gap`` seconds apart (event time) form one
    window ``[first, last + gap)``, emitted once the watermark passes its end."""
    return SessionSpec(_duration_ms("session window gap", gap, gap_milliseconds, allow_zero=False))


# --------------------------------------------------------------------------------------
# Operators (plain records; the executor gives them meaning)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RabbitStream:
    """Issue 19: a source read from RabbitMQ streams instead of Kafka. Partition p reads the
    stream ``stream`` (one partition) or ``{stream}-{p}`` (a super stream's partitions, as
    RabbitMQ names them). ``url``: ``rabbitmq-stream://user:password@host:port/vhost``."""

    stream: str
    url: str

    def stream_of(self, partition: int, partitions: int) -> str:
        return self.stream if partitions == 1 else f"{self.stream}-{partition}"


@dataclass(frozen=True, slots=True)
class RabbitQueue:
    """Issue 19: a source read from RabbitMQ classic or quorum queues, at-least-once. Partition
    p reads the queue ``queue`` (one partition) or ``{queue}-{p}``. A queue has no offsets: the
    reader numbers the messages it delivers from the partition's resume offset on (a *virtual*
    offset, valid for one subscription) and acknowledges them once the checkpoint covering them
    is agreed (docs/architecture.md, "RabbitMQ queues"). ``url``: ``amqp://user:pw@host/vhost``;
    ``prefetch``: unacknowledged messages in flight per partition (messages stay unacknowledged
    until their checkpoint, so it bounds what one checkpoint interval can carry)."""

    queue: str
    url: str
    prefetch: int = 10_000

    def queue_of(self, partition: int, partitions: int) -> str:
        return self.queue if partitions == 1 else f"{self.queue}-{partition}"


@dataclass(frozen=True, slots=True)
class Source:
    """The job's input. ``topic`` is the Kafka topic stage 0 is keyed by; for a RabbitMQ source
    (``rabbitmq`` set) it is an empty *anchor* topic named after the job, under which the
    stream offsets (or a queue's virtual offsets) are agreed through Paxos like a Kafka
    source's offsets (docs/architecture.md, "RabbitMQ sources")."""

    topic: str
    partitions: int
    value: Any = "bytes"
    rabbitmq: RabbitStream | RabbitQueue | None = None


@dataclass(frozen=True, slots=True)
class Map:
    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Filter:
    fn: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class FlatMap:
    fn: Callable[[Any], Iterable[Any]]


@dataclass(frozen=True, slots=True)
class KeyBy:
    fn: Callable[[Any], Any]
    partitions: int | None = None
    value_type: Any = None


@dataclass(frozen=True, slots=True)
class Window:
    spec: AnyWindowSpec
    allowed_lateness_ms: int = 0
    timestamp: Callable[[Any], Any] | None = None
    #: wall-clock ms without records after which the partition's watermark advances with
    #: the wall clock (pipeline/executor/ticks.py); None: only records move it.
    idle_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Count:
    pass


_NO_INITIAL: Any = type("_NoInitial", (), {"__repr__": lambda self: "<no initial>"})()


@dataclass(frozen=True, slots=True)
class Reduce:
    """``fn(acc, value) -> acc``; without ``initial`` the first value of a key is the acc."""

    fn: Callable[[Any, Any], Any]
    initial: Any = _NO_INITIAL

    @property
    def has_initial(self) -> bool:
        return self.initial is not _NO_INITIAL


@dataclass(frozen=True, slots=True)
class Aggregate:
    """``fn(acc, value) -> acc`` starting from ``initial`` (a value, or a zero-arg factory)."""

    initial: Any
    fn: Callable[[Any, Any], Any]


def _pair(value: Any, row: Any) -> Any:
    """The default of join_table(): the stream value and the table row side by side."""
    return {"value": value, "table": row}


@dataclass(frozen=True, slots=True)
class JoinTable:
    """Enrich each record with the row of its key in a table (a compacted topic).

    The table's records reach the joining stage through its own repartition topic, merged in
    offset order with the stream (pipeline/executor/joins.py), so the join is replayable and
    its state rides the stage's commit protocol like any other."""

    topic: str
    partitions: int
    how: Literal["left", "inner"] = "left"
    value: Any = "json"
    fn: Callable[[Any, Any], Any] = _pair


@dataclass(frozen=True, slots=True)
class JoinStream:
    """Pair each record with the other stream's records of its key within ``within_ms`` of
    event time (an inner, windowed stream-stream join; pipeline/executor/joins.py)."""

    topic: str
    partitions: int
    within_ms: int
    grace_ms: int = 0
    key: Callable[[Any], Any] | None = None
    value: Any = "json"
    timestamp: Callable[[Any], Any] | None = None
    fn: Callable[[Any, Any], Any] = _pair


@dataclass(frozen=True, slots=True)
class ToKafka:
    topic: str
    value: SinkValue = "json"


@dataclass(frozen=True, slots=True)
class ToRedis:
    view: str


@dataclass(frozen=True, slots=True)
class ToRabbitMQ:
    """Issue 19: publish each output to the RabbitMQ queue ``queue`` (the default exchange,
    routing key = queue name) of the node at ``url`` (``amqp://`` or ``amqps://``), persistent,
    with publisher confirms: a checkpoint is agreed only after RabbitMQ confirmed every message
    of the inputs it covers. At-least-once only (a replay publishes again). ``declare``: the
    queue type created if the queue is missing ("classic" or "quorum"), None to require an
    existing queue (a missing one stalls the partition, "RabbitMQ queue missing")."""

    queue: str
    url: str
    value: SinkValue = "json"
    declare: Literal["classic", "quorum"] | None = "classic"


FileFormat = Literal["parquet", "jsonl"]
FileRoll = Literal["minute", "hour", "day"]


@dataclass(frozen=True, slots=True)
class ToFiles:
    """The exactly-once file sink (issue 18, pipeline/files/): ``url`` is an fsspec URL (a
    local directory by default, ``webhdfs://host:port/path`` for HDFS), ``roll`` the time
    bucket of the directory layout (``dt=YYYY-MM-DD/hour=HH``...), ``max_records`` the size
    at which a file rolls within a bucket. Records are JSON-compatible values; parquet needs
    dicts (one column per key)."""

    url: str
    format: FileFormat = "parquet"
    roll: FileRoll = "hour"
    max_records: int = 100_000


Operator = (
    Source
    | Map
    | Filter
    | FlatMap
    | KeyBy
    | Window
    | Count
    | Reduce
    | Aggregate
    | JoinTable
    | JoinStream
    | ToKafka
    | ToRedis
    | ToFiles
    | ToRabbitMQ
)

_OP_NAMES: dict[type, str] = {
    Source: "source",
    Map: "map",
    Filter: "filter",
    FlatMap: "flat_map",
    KeyBy: "key_by",
    Window: "window",
    Count: "count",
    Reduce: "reduce",
    Aggregate: "aggregate",
    JoinTable: "join_table",
    JoinStream: "join_stream",
    ToKafka: "to_kafka",
    ToRedis: "to_redis",
    ToFiles: "to_files",
    ToRabbitMQ: "to_rabbitmq",
}


def op_name(op: object) -> str:
    """The builder-method name of an operator, used in every error message."""
    return _OP_NAMES.get(type(op), type(op).__name__)


def _callable(method: str, fn: object, arg: str = "fn") -> None:
    if not callable(fn):
        raise SpecError(f"{method}(): {arg} must be callable, got {type(fn).__name__}")


_STREAM_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _url_problem(url: object, schemes: tuple[str, ...], example: str) -> str | None:
    if not isinstance(url, str):
        return f"must be a string, got {url!r}"
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        return f"must start with {' or '.join(f'{x}://' for x in schemes)}, got {shown(url)}"
    try:
        port = parts.port
    except ValueError:
        return f"has a bad port: {shown(url)}"
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        return f"must name a host ({example}), got {shown(url)}"
    return None


def _check_rabbitmq_source(where: str, value: Any, url_problem: str | None) -> None:
    """What the stream and queue sources check alike: the value codec, then the URL."""
    from pipeline.codecs import CodecError, value_decoder

    try:
        value_decoder(value)
    except CodecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    if url_problem:
        raise SpecError(f"{where}: url {url_problem}")


def stream_url_problem(url: object) -> str | None:
    """Why ``url`` is not a RabbitMQ stream URL, or None."""
    return _url_problem(url, ("rabbitmq-stream",), "rabbitmq-stream://user:password@host:5552/")


def amqp_url_problem(url: object) -> str | None:
    """Why ``url`` is not an AMQP URL (``amqp://user:password@host:5672/vhost``), or None."""
    return _url_problem(url, ("amqp", "amqps"), "amqp://user:password@host:5672/")


def queue_problem(queue: object) -> str | None:
    """Why ``queue`` cannot name a RabbitMQ queue of a job, or None. The name also ends the
    Kafka anchor topic of a queue source, hence Kafka's character set."""
    if not isinstance(queue, str) or not _STREAM_NAME.fullmatch(queue):
        return f"must match [A-Za-z0-9._-]{{1,200}}, got {queue!r}"
    if queue.startswith("amq."):
        return f"must not start with 'amq.' (reserved by RabbitMQ), got {queue!r}"
    return None


def _positive_int(method: str, arg: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SpecError(f"{method}(): {arg} must be an integer >= 1, got {v!r}")


# --------------------------------------------------------------------------------------
# Job
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A named dataflow pipeline; build it by chaining, e.g. ``Job("wc").source(...)...``."""

    name: str
    guarantee: Guarantee = "at-least-once"
    operators: tuple[Operator, ...] = ()
    dead_letter_topic: str | None = None
    extra_settings: Mapping[str, Any] = field(default_factory=dict)
    #: issue 16: stateful stages log every changed key to ``paxline.{job}.changelog.{n}``, so
    #: state that Redis loses is restored. ``False`` saves that write (docs/architecture.md
    #: sec. 4, "Jobs without a changelog"): exactly-once then stops a partition whose Redis
    #: state was lost ("state lost"), at-least-once goes on from what Redis still has.
    changelog: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not JOB_NAME.fullmatch(self.name):
            raise SpecError(f"Job(): name must match [A-Za-z0-9._-]{{1,128}}, got {self.name!r}")
        if self.guarantee not in GUARANTEES:
            raise SpecError(
                f"Job(): guarantee must be one of {', '.join(GUARANTEES)}, got {self.guarantee!r}"
            )
        if not isinstance(self.changelog, bool):
            raise SpecError(f"Job(): changelog must be True or False, got {self.changelog!r}")

    def _then(self, op: Operator) -> Job:
        return replace(self, operators=(*self.operators, op))

    # sources and stateless operators ---------------------------------------------------

    def source(self, topic: str, *, partitions: int, value: Any = "bytes") -> Job:
        """Consume ``topic``; ``value`` picks the decoder (see :mod:`pipeline.codecs`)."""
        _positive_int("source", "partitions", partitions)
        from pipeline.codecs import CodecError, value_decoder

        try:
            value_decoder(value)
        except CodecError as exc:
            raise SpecError(f"source({topic!r}): {exc}") from None
        return self._then(Source(topic, partitions, value))

    def source_rabbitmq_stream(
        self, stream: str, *, url: str, partitions: int = 1, value: Any = "bytes"
    ) -> Job:
        """Consume a RabbitMQ stream (issue 19): ``partitions=1`` reads ``stream``, more read a
        super stream's partitions ``{stream}-0`` .. ``{stream}-{n-1}``. Offsets are the
        stream's; where to resume is the agreed checkpoint (Kafka's transactionally committed
        offset under exactly-once), never RabbitMQ's stored offsets. A message's value is its
        body, its key the application property ``key`` if any, its time the chunk's timestamp.
        ``url``: ``rabbitmq-stream://user:password@host:port/vhost`` (port 5552 by default)."""
        _positive_int("source_rabbitmq_stream", "partitions", partitions)
        where = f"source_rabbitmq_stream({stream!r})"
        if not isinstance(stream, str) or not _STREAM_NAME.fullmatch(stream):
            raise SpecError(f"{where}: stream must match [A-Za-z0-9._-]{{1,200}}, got {stream!r}")
        _check_rabbitmq_source(where, value, stream_url_problem(url))
        anchor = f"paxline.{self.name}.rabbitmq.{stream}"
        return self._then(Source(anchor, partitions, value, RabbitStream(stream, url)))

    def source_rabbitmq_queue(
        self,
        queue: str,
        *,
        url: str,
        partitions: int = 1,
        value: Any = "bytes",
        prefetch: int = 10_000,
    ) -> Job:
        """Consume a RabbitMQ classic or quorum queue, at-least-once (issue 19): a message is
        acknowledged only after the checkpoint covering it is agreed by the coordinators, so a
        crash redelivers it and it is processed again (duplicates, never losses). Exactly-once
        is refused (a queue cannot be replayed from an offset; read a stream for that).
        ``partitions=1`` reads ``queue``, more read ``{queue}-0`` .. ``{queue}-{n-1}``. A
        message's value is its body, its key the header ``key`` if any, its time the message
        timestamp (else the time it was read). ``url``: ``amqp://user:password@host:5672/vhost``.
        """
        _positive_int("source_rabbitmq_queue", "partitions", partitions)
        _positive_int("source_rabbitmq_queue", "prefetch", prefetch)
        where = f"source_rabbitmq_queue({queue!r})"
        problem = queue_problem(queue)
        if problem:
            raise SpecError(f"{where}: queue {problem}")
        _check_rabbitmq_source(where, value, amqp_url_problem(url))
        anchor = f"paxline.{self.name}.rabbitmq-queue.{queue}"
        return self._then(Source(anchor, partitions, value, RabbitQueue(queue, url, prefetch)))

    def map(self, fn: Callable[[Any], Any]) -> Job:
        _callable("map", fn)
        return self._then(Map(fn))

    def filter(self, fn: Callable[[Any], Any]) -> Job:
        _callable("filter", fn)
        return self._then(Filter(fn))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]]) -> Job:
        _callable("flat_map", fn)
        return self._then(FlatMap(fn))

    def key_by(
        self, fn: Callable[[Any], Any], *, partitions: int | None = None, value_type: Any = None
    ) -> Job:
        """Re-key the stream; records travel through a repartition topic to the next stage.

        Keys become strings (``str`` as is, ``bytes`` as UTF-8, ``int`` in decimal, anything
        else as sorted-key JSON). ``partitions`` defaults to the source's count.
        ``value_type`` (a dataclass, msgspec, pydantic or faust.Record class) restores typed
        values after the hop; without it they arrive as plain dicts/lists unless the source's
        value class still applies (no map/flat_map in between).
        """
        _callable("key_by", fn)
        if partitions is not None:
            _positive_int("key_by", "partitions", partitions)
        if value_type is not None:
            from pipeline.codecs import CodecError, typed_converter

            try:
                typed_converter(value_type)
            except CodecError as exc:
                raise SpecError(f"key_by(): value_type: {exc}") from None
        return self._then(KeyBy(fn, partitions, value_type))

    # stateful operators ----------------------------------------------------------------

    def window(
        self,
        spec: AnyWindowSpec,
        *,
        allowed_lateness: float = 0,
        timestamp: Callable[[Any], Any] | None = None,
        idle_timeout: float | None = None,
    ) -> Job:
        """Window the next count/reduce/aggregate by event time.

        ``allowed_lateness`` is in seconds; ``timestamp(value)`` returns epoch milliseconds
        (default: the Kafka record timestamp). A window emits once, when the partition's
        watermark (max event time seen) reaches ``end + allowed_lateness``.

        ``idle_timeout`` (seconds, wall clock): once a partition has had no record for this
        long, its watermark advances with the wall clock from the last record's, so a quiet
        partition's last window is emitted on time instead of when the next record comes.
        """
        if not isinstance(spec, WindowSpec | SlidingSpec | SessionSpec):
            raise SpecError(
                "window(): expected tumbling(...), hopping(...), sliding(...) or "
                f"session(gap=...), got {type(spec).__name__}"
            )
        lateness = _duration_ms("window(): allowed_lateness", allowed_lateness, 0, allow_zero=True)
        if timestamp is not None:
            _callable("window", timestamp, "timestamp")
        idle: int | None = None
        if idle_timeout is not None:
            idle = _duration_ms("window(): idle_timeout", idle_timeout, 0, allow_zero=False)
        return self._then(Window(spec, lateness, timestamp, idle))

    def count(self) -> Job:
        return self._then(Count())

    def reduce(self, fn: Callable[[Any, Any], Any], initial: Any = _NO_INITIAL) -> Job:
        _callable("reduce", fn)
        return self._then(Reduce(fn, initial))

    def aggregate(self, initial: Any, fn: Callable[[Any, Any], Any]) -> Job:
        _callable("aggregate", fn)
        return self._then(Aggregate(initial, fn))

    def join_table(
        self,
        topic: str,
        *,
        partitions: int,
        how: str = "left",
        value: Any = "json",
        fn: Callable[[Any, Any], Any] | None = None,
    ) -> Job:
        """Join each record with the row of its key in the table kept in ``topic``.

        The table is materialised from ``topic`` (a compacted topic of ``partitions``
        partitions; the record key is the row key, a null value deletes the row) and
        co-partitioned with the stream by the stage's key: it must directly follow a
        ``key_by`` whose keys are the table's keys (as UTF-8 strings). ``fn(value, row)``
        builds the result (default ``{"value": value, "table": row}``); ``how="left"`` passes
        ``row=None`` when the key has no row, ``how="inner"`` drops such records.
        """
        _positive_int("join_table", "partitions", partitions)
        if how not in ("left", "inner"):
            raise SpecError(f"join_table(): how must be 'left' or 'inner', got {how!r}")
        if fn is not None:
            _callable("join_table", fn)
        from pipeline.codecs import CodecError, value_decoder

        try:
            value_decoder(value)
        except CodecError as exc:
            raise SpecError(f"join_table({topic!r}): {exc}") from None
        mode: Literal["left", "inner"] = "left" if how == "left" else "inner"
        return self._then(JoinTable(topic, partitions, mode, value, fn or _pair))

    def join_stream(
        self,
        topic: str,
        *,
        partitions: int,
        within: float,
        grace: float = 0,
        key: Callable[[Any], Any] | None = None,
        value: Any = "json",
        timestamp: Callable[[Any], Any] | None = None,
        fn: Callable[[Any, Any], Any] | None = None,
    ) -> Job:
        """Inner-join each record with the records of stream ``topic`` that have the same key
        and event times at most ``within`` seconds apart, emitting ``fn(value, other)``
        (default ``{"value": value, "table": other}``) once per pair, when its second record
        arrives. It must directly follow a ``key_by``; ``key(other)`` keys the other stream
        (default: its Kafka key), ``timestamp(value)`` gives both sides' event time in epoch
        ms (default: the records' timestamps). A record older than the partition's watermark
        minus ``within`` minus ``grace`` seconds is late: counted and dropped.
        """
        _positive_int("join_stream", "partitions", partitions)
        within_ms = _duration_ms("join_stream(): within", within, 0, allow_zero=True)
        grace_ms = _duration_ms("join_stream(): grace", grace, 0, allow_zero=True)
        for name, f in (("key", key), ("timestamp", timestamp), ("fn", fn)):
            if f is not None:
                _callable("join_stream", f, name)
        from pipeline.codecs import CodecError, value_decoder

        try:
            value_decoder(value)
        except CodecError as exc:
            raise SpecError(f"join_stream({topic!r}): {exc}") from None
        return self._then(
            JoinStream(topic, partitions, within_ms, grace_ms, key, value, timestamp, fn or _pair)
        )

    # sinks and configuration -----------------------------------------------------------

    def to_kafka(self, topic: str, *, value: SinkValue = "json") -> Job:
        if value not in ("json", "str", "bytes"):
            raise SpecError(f"to_kafka(): value must be 'json', 'str' or 'bytes', got {value!r}")
        return self._then(ToKafka(topic, value))

    def to_rabbitmq(
        self,
        queue: str,
        *,
        url: str,
        value: SinkValue = "json",
        declare: Literal["classic", "quorum"] | None = "classic",
    ) -> Job:
        """Publish the stream to the RabbitMQ queue ``queue`` at ``url`` (``amqp://`` or
        ``amqps://``; default exchange, routing key = queue) with publisher confirms,
        at-least-once: the checkpoint covering an input is agreed only after RabbitMQ
        confirmed its messages, so a crash may publish some twice, never lose one. A record's
        key travels as the header ``key``. ``declare`` creates a missing queue durable of that
        type ("classic" or "quorum"); None requires the queue to exist. Exactly-once jobs
        are refused at submit."""
        where = f"to_rabbitmq({queue!r})"
        problem = queue_problem(queue)
        if problem:
            raise SpecError(f"{where}: queue {problem}")
        problem = amqp_url_problem(url)
        if problem:
            raise SpecError(f"{where}: url {problem}")
        if value not in ("json", "str", "bytes"):
            raise SpecError(f"{where}: value must be 'json', 'str' or 'bytes', got {value!r}")
        if declare not in ("classic", "quorum", None):
            raise SpecError(
                f"{where}: declare must be 'classic', 'quorum' or None, got {declare!r}"
            )
        return self._then(ToRabbitMQ(queue, url, value, declare))

    def to_redis(self, view: str) -> Job:
        return self._then(ToRedis(view))

    def to_files(
        self,
        url: str,
        *,
        format: FileFormat = "parquet",
        roll: FileRoll = "hour",
        max_records: int = 100_000,
    ) -> Job:
        """Write the stream to time-partitioned files under ``url`` (fsspec: a local path,
        ``file://``, ``webhdfs://``, an object store with its fsspec package), exactly once
        by two-phase commit: a file is written under ``_tmp/`` and renamed into
        ``{bucket}/`` only once the checkpoint covering it is agreed (docs/architecture.md,
        "File sink")."""
        return self._then(ToFiles(url, format, roll, max_records))

    def dead_letter(self, topic: str) -> Job:
        """Where undecodable or failing records go (default ``paxline.{job}.dlq``)."""
        return replace(self, dead_letter_topic=topic)

    def settings(self, **values: Any) -> Job:
        unknown = sorted(set(values) - set(DEFAULT_SETTINGS))
        if unknown:
            raise SpecError(
                f"settings(): unknown setting {unknown[0]!r}; "
                f"known: {', '.join(sorted(DEFAULT_SETTINGS))}"
            )
        return replace(self, extra_settings={**self.extra_settings, **values})

    # derived ----------------------------------------------------------------------------

    @property
    def dlq_topic(self) -> str:
        return self.dead_letter_topic or f"paxline.{self.name}.dlq"

    def __repr__(self) -> str:
        chain = ".".join(op_name(op) for op in self.operators)
        return f"Job({self.name!r}{'.' if chain else ''}{chain})"
