"""The file sink's I/O shell (issue 18): one :class:`PartitionFiles` per owned partition whose
stage ends in ``to_files()``, driven by the worker at five points (docs/architecture.md,
"File sink"); the order is decided by the pure :class:`~pipeline.files.commit.FileCommits`.

- ``take(result, end)`` (after a batch is processed): the batch's file outputs leave
  ``result.outputs`` (they never go to Kafka) and wait in memory, tagged with the batch end.
- ``close(upto)``: write the rows of batches ending at or before ``upto`` to one temporary
  file and feed ``Closed``. Exactly-once runs it as ``Prepare(end)`` on the commit thread,
  before the Kafka transaction (the commit point) covers ``end``; at-least-once before its
  state step (stateful) or its checkpoint (stateless), so an offset the worker resumes after
  never has output only in memory. Files also roll at ``max_records`` and when the time
  bucket changes.
- ``committable(position)``: the checkpoint never passes rows that are not in a closed file.
- ``agreed(offset)``: a checkpoint was agreed: publish (rename) the files it covers.
- :func:`open_partition` (the takeover): list what the previous owners left, publish the
  agreed chain, delete the rest.

File system faults are transient (:class:`~pipeline.errors.TransientError`, "file system
unavailable"): a failed write drops the partition for a retake; a failed rename is retried
at the next agreed checkpoint or by the next owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import orjson

from pipeline.errors import TransientError
from pipeline.executor.records import FILES_TOPIC, BatchResult, OutRecord
from pipeline.files.commit import (
    Agreed,
    Closed,
    Delete,
    Effect,
    FileCommits,
    Publish,
    TakeOver,
    TempFile,
    parse_final,
    parse_temp,
    temp_name,
)
from pipeline.files.support import url_problem

__all__ = ["FileSystemUnavailable", "PartitionFiles", "SinkConfig", "bucket_of", "open_partition"]

log = logging.getLogger(__name__)

_BUCKET_FORMATS = {
    "day": "dt=%Y-%m-%d",
    "hour": "dt=%Y-%m-%d/hour=%H",
    "minute": "dt=%Y-%m-%d/hour=%H/minute=%M",
}


class FileSystemUnavailable(TransientError):
    """Writing, renaming or listing files failed (HDFS down, a timeout, a full disk)."""

    reason = "file system unavailable"


def bucket_of(roll: str, now: float) -> str:
    """The time bucket (relative directory, UTC, processing time) of a file opened at
    ``now``; it is part of the file's names, so a replay puts nothing in two buckets."""
    return time.strftime(_BUCKET_FORMATS[roll], time.gmtime(now))


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """``spec.sink`` of a ``to_files()`` job."""

    url: str
    format: str
    roll: str
    max_records: int

    @classmethod
    def of(cls, sink: Mapping[str, Any]) -> SinkConfig:
        return cls(str(sink["url"]), str(sink["format"]), str(sink["roll"]),
                   int(sink["max_records"]))  # fmt: skip

    @property
    def ext(self) -> str:
        return "parquet" if self.format == "parquet" else "jsonl"


def _rows(records: list[OutRecord]) -> list[dict[str, Any]]:
    """A record's JSON value as a row: a dict is its columns; anything else is ``{key,
    value}`` (parquet needs named columns)."""
    rows = []
    for r in records:
        v = orjson.loads(r.value) if r.value is not None else None
        if not isinstance(v, dict):
            v = {"key": None if r.key is None else r.key.decode("utf-8", "replace"), "value": v}
        rows.append(v)
    return rows


def _encode(fmt: str, records: list[OutRecord]) -> bytes:
    if fmt == "jsonl":
        return b"".join((r.value or b"null") + b"\n" for r in records)
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows(records)
    names = list(dict.fromkeys(k for row in rows for k in row))
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # Values of mixed types (3 and "x") fit no parquet column: keep the column as
            # JSON text rather than fail the group (which would fail every retry, too).
            log.warning("file sink: column %r has mixed types; written as JSON text", name)
            columns.append(pa.array([None if v is None else orjson.dumps(v).decode()
                                     for v in values], pa.string()))  # fmt: skip
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, names=names), buf)
    return buf.getvalue()


@dataclass
class PartitionFiles:
    """One owned partition's files: rows waiting in memory, the two-phase state machine and
    the file system it publishes to. Thread-safe: exactly-once closes on the commit thread
    while the main thread takes the next group's batches."""

    fs: Any  # fsspec.AbstractFileSystem
    root: str
    cfg: SinkConfig
    epoch: int
    commits: FileCommits
    clock: Callable[[], float] = time.time
    #: (batch end, rows) not yet in a closed file, in offset order
    pending: list[tuple[int, list[OutRecord]]] = field(default_factory=list)
    bucket: str | None = None  # the open file's bucket
    #: publishes that failed (file system down), retried at the next agreed checkpoint
    unpublished: list[Publish] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    # --------------------------------------------------------------------------- writing
    def take(self, result: BatchResult, end: int) -> None:
        """Move the batch's file outputs out of ``result.outputs`` (changelog records stay)."""
        rows = [r for r in result.outputs if r.topic == FILES_TOPIC]
        if rows:
            result.outputs = [r for r in result.outputs if r.topic != FILES_TOPIC]
        with self.lock:
            bucket = bucket_of(self.cfg.roll, self.clock())
            if self.bucket is not None and bucket != self.bucket and self._rows() > 0:
                self._roll(self.pending[-1][0])  # the hour (day...) turned
            if rows:
                if self.bucket is None:
                    self.bucket = bucket
                self.pending.append((end, rows))
                if self._rows() >= self.cfg.max_records:
                    self._roll(end)

    def _roll(self, upto: int) -> None:
        """Roll early; a failure leaves the rows pending for the next close (which reports)."""
        try:
            self._close(upto)
        except FileSystemUnavailable as exc:
            log.warning("%s: roll failed, retried at the next close: %s", self.commits.prefix, exc)

    def _rows(self) -> int:
        return sum(len(rows) for _, rows in self.pending)

    def close(self, upto: int) -> None:
        """Write the rows of batches ending at or before ``upto`` as one temporary file."""
        with self.lock:
            self._close(upto)

    def _close(self, upto: int) -> None:
        due = [(e, rows) for e, rows in self.pending if e <= upto]
        if not due:
            return
        first = self.commits.closed_to or 0
        end = due[-1][0]
        records = [r for _, rows in due for r in rows]
        f = TempFile(first, end, self.epoch, self.bucket or bucket_of(self.cfg.roll,
                     self.clock()), self.cfg.ext)  # fmt: skip
        path = self._path(temp_name(self.commits.prefix, f))
        data = _encode(self.cfg.format, records)
        try:
            self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
            with self.fs.open(path, "wb") as out:
                out.write(data)
        except Exception as exc:  # any fsspec back end: OSError, requests', HTTP errors
            raise FileSystemUnavailable(f"writing {path}: {exc}") from exc
        self.commits.step(Closed(f))
        self.pending = [(e, rows) for e, rows in self.pending if e > upto]
        self.bucket = None if not self.pending else self.bucket

    # ---------------------------------------------------------------------- committing
    def committable(self, position: int, *, seal: bool) -> int | None:
        """The checkpoint offset for ``position``; ``seal`` (at-least-once, stateless) first
        closes a file of everything up to ``position``. A failed write only holds the
        checkpoint back (logged): nothing else depends on it."""
        with self.lock:
            if seal:
                try:
                    self._close(position)
                except FileSystemUnavailable as exc:
                    log.warning("%s: %s; checkpoint held back", self.commits.prefix, exc)
            open_rows = any(e <= position for e, _ in self.pending)
            return self.commits.committable(position, open_rows=open_rows)

    def agreed(self, offset: int) -> None:
        with self.lock:
            effects: list[Effect] = [*self.unpublished, *self.commits.step(Agreed(offset))]
        self.unpublished = _apply(self.fs, self.root, effects)


def _apply(fs: Any, root: str, effects: list[Effect]) -> list[Publish]:
    """Run publishes and deletes; return the publishes that failed (to retry)."""
    failed: list[Publish] = []
    for e in effects:
        try:
            if isinstance(e, Delete):
                if fs.exists(f"{root}/{e.temp}"):
                    fs.rm(f"{root}/{e.temp}")
                continue
            temp, final = f"{root}/{e.temp}", f"{root}/{e.final}"
            if fs.exists(final):  # published already (by a zombie, or before a crash)
                if fs.exists(temp):
                    fs.rm(temp)
                continue
            fs.makedirs(final.rpartition("/")[0], exist_ok=True)
            fs.mv(temp, final)
        except Exception as exc:  # file system faults: the next owner or checkpoint retries
            log.warning("file sink: %s failed: %s; retried later", e, exc)
            if isinstance(e, Publish):
                failed.append(e)
    return failed


def _filesystem(url: str) -> tuple[Any, str]:
    problem = url_problem(url)
    if problem is not None:  # stalls (and says why) until the package is installed here
        exc = FileSystemUnavailable(f"file sink {url!r}: {problem}")
        exc.reason = "file system package missing on this worker"
        raise exc
    fs, root = fsspec.core.url_to_fs(url)
    return fs, str(root).rstrip("/")


def open_partition(
    sink: Mapping[str, Any], job: str, topic: str, partition: int, epoch: int, agreed: int | None
) -> PartitionFiles:
    """The takeover: finish what earlier owners of the partition left (publish the chain of
    temporary files ``agreed`` covers, delete the rest) and start writing after it. Raises
    :class:`FileSystemUnavailable` (the takeover is retried) if the files cannot be listed or
    a publish fails."""
    cfg = SinkConfig.of(sink)
    prefix = f"{job}/{topic}/{partition}"
    try:
        fs, root = _filesystem(cfg.url)
        fs.makedirs(root, exist_ok=True)
        tmp = f"{root}/_tmp/{prefix}"
        temps = []
        for p in fs.find(tmp) if fs.exists(tmp) else []:
            t = parse_temp(prefix, _relative(root, p))
            if t is not None:
                temps.append(t)
        published = []
        for p in fs.find(root):
            rel = _relative(root, p)
            if rel.startswith("_tmp/"):
                continue
            r = parse_final(prefix, rel)
            if r is not None:
                published.append(r)
    except Exception as exc:
        raise FileSystemUnavailable(f"listing {cfg.url}: {exc}") from exc
    commits = FileCommits(prefix)
    effects = commits.step(TakeOver(agreed, tuple(temps), tuple(published)))
    failed = _apply(fs, root, effects)
    if failed:
        raise FileSystemUnavailable(f"{prefix}: {len(failed)} file(s) could not be published")
    if effects:
        log.info("file sink %s: takeover at %s published %d, deleted %d leftover file(s)",
                 prefix, agreed, sum(isinstance(e, Publish) for e in effects),
                 sum(isinstance(e, Delete) for e in effects))  # fmt: skip
    return PartitionFiles(fs, root, cfg, epoch, commits)


def _relative(root: str, path: str) -> str:
    path = path.rstrip("/")
    bare = root.lstrip("/")
    p = path.lstrip("/")
    return p[len(bare) :].lstrip("/") if p.startswith(bare) else p
