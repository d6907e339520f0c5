"""An append-only record log with checksums, group-commit fsync and torn-tail recovery.

Each record is `length (u32) | crc32 (u32) | payload`. A crash can leave a partial or garbled
last record (the write was not acknowledged, so losing it is allowed); on open we keep every
record up to the last one whose length and checksum are intact and truncate the rest, with a
warning, rather than refuse to start.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["MAX_RECORD", "RecordLog", "atomic_write"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
MAX_RECORD = 64 * 1024 * 1024


def atomic_write(path: Path, data: bytes, fsync: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _scan(data: bytes) -> tuple[list[bytes], int]:
    """Intact records and the byte offset where the intact prefix ends."""
    records: list[bytes] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        pos = end
    return records, pos


class RecordLog:
    """The file behind a node's durable Paxos state. Not thread-safe: one driver owns it."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = path
        self.fsync = fsync
        self.fsyncs = 0
        self.truncated_bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._records = self._recover()
        self._file = open(path, "ab")  # noqa: SIM115 - lives as long as the log

    def _recover(self) -> list[bytes]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records, good = _scan(data)
        if good < len(data):
            rest = data[good:]
            # Everything after the first damaged record goes: with group commit one write
            # carries many records, and a power loss may persist its pages out of order, so
            # "intact" records after the damage were never acknowledged either.
            log.warning(
                "%s: truncating torn tail of %d bytes after %d intact records",
                self.path,
                len(rest),
                len(records),
            )
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
            self.truncated_bytes = len(rest)
        return records

    def records(self) -> list[bytes]:
        """Payloads of every record recovered at open (later appends are not re-read)."""
        return list(self._records)

    def append(self, payloads: Iterable[bytes]) -> None:
        """Append and make durable with one fsync: the group commit of everything the driver
        gathered since the previous call."""
        blob = b"".join(_frame(p) for p in payloads)
        if not blob:
            return
        self._file.write(blob)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
            self.fsyncs += 1

    def rewrite(self, payloads: Iterable[bytes]) -> None:
        """Replace the whole log atomically (compaction after a snapshot)."""
        self._file.close()
        atomic_write(self.path, b"".join(_frame(p) for p in payloads), self.fsync)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._records = []

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
