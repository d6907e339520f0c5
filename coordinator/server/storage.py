"""`Storage` on disk: the Paxos acceptor state in a checksummed log plus a snapshot file.

Every `save` is one log append with one fsync (the runtime calls it once per `Ready`, which
is what makes the commit a group commit). A snapshot is written to its own file first and the
log is then rewritten without the slots it covers, so the log stays proportional to the
snapshot interval rather than to the cluster's age.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import msgspec

from coordinator.errors import CoordinatorError
from coordinator.paxos.types import (
    ZERO_BALLOT,
    AcceptedEntry,
    Ballot,
    Batch,
    Command,
    DurableState,
    PersistUpdate,
    Snapshot,
)
from coordinator.server.wal import RecordLog, atomic_write

__all__ = ["DiskStorage", "StorageCorruption"]

_CRC = struct.Struct(">I")


class StorageCorruption(CoordinatorError):
    """The snapshot file is damaged; starting from it would silently lose chosen state."""


def _enc_entry(e: AcceptedEntry) -> list[Any]:
    cmds = [[c.client_id, c.seq, c.payload] for c in e.value.commands]
    return [e.slot, e.ballot.round, e.ballot.node, cmds]


def _dec_entry(raw: list[Any]) -> AcceptedEntry:
    slot, rnd, node, cmds = raw
    batch = Batch(tuple(Command(str(c), int(s), bytes(p)) for c, s, p in cmds))
    return AcceptedEntry(int(slot), Ballot(int(rnd), int(node)), batch)


SNAPSHOT_FILE = "snapshot.bin"


def read_snapshot(storage_dir: Path) -> Snapshot | None:
    """The snapshot in ``storage_dir`` (a node's ``<data dir>/paxos``), read only: tools such
    as bench/coordinator_scale.py use this on a running node, whose log they must not open."""
    path = storage_dir / SNAPSHOT_FILE
    if not path.exists():
        return None
    blob = path.read_bytes()
    if len(blob) < _CRC.size or zlib.crc32(blob[_CRC.size :]) != _CRC.unpack_from(blob)[0]:
        raise StorageCorruption(f"{path} fails its checksum")
    index, data = msgspec.msgpack.decode(blob[_CRC.size :])
    return Snapshot(int(index), bytes(data))


class DiskStorage:
    """Implements `coordinator.paxos.storage.Storage` in `data_dir`."""

    def __init__(self, data_dir: Path, fsync: bool = True) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.fsync = fsync
        self._snap_path = data_dir / SNAPSHOT_FILE
        self._snapshot = self._read_snapshot()
        self._log = RecordLog(data_dir / "paxos.log", fsync=fsync)
        self._promised = ZERO_BALLOT
        self._accepted: dict[int, AcceptedEntry] = {}
        floor = self._snapshot.index if self._snapshot else 0
        for raw in self._log.records():
            promised, entries = msgspec.msgpack.decode(raw)
            if promised is not None:
                self._promised = max(self._promised, Ballot(promised[0], promised[1]))
            for e in entries:
                entry = _dec_entry(e)
                if entry.slot > floor:
                    self._accepted[entry.slot] = entry

    @property
    def log(self) -> RecordLog:
        return self._log

    def _read_snapshot(self) -> Snapshot | None:
        return read_snapshot(self.data_dir)

    def load(self) -> DurableState:
        return DurableState(
            promised=self._promised,
            accepted=tuple(self._accepted[s] for s in sorted(self._accepted)),
            snapshot=self._snapshot,
        )

    def save(self, update: PersistUpdate) -> None:
        if update.promised is not None and update.promised > self._promised:
            self._promised = update.promised
        for entry in update.accepted:
            self._accepted[entry.slot] = entry
        snap = update.snapshot
        if snap is not None and (self._snapshot is None or snap.index > self._snapshot.index):
            body = msgspec.msgpack.encode([snap.index, snap.data])
            atomic_write(self._snap_path, _CRC.pack(zlib.crc32(body)) + body, self.fsync)
            self._snapshot = snap
            for slot in [s for s in self._accepted if s <= snap.index]:
                del self._accepted[slot]
            self._log.rewrite([self._record(self._promised, list(self._accepted.values()))])
            return
        if update.promised is None and not update.accepted:
            return
        self._log.append([self._record(update.promised, list(update.accepted))])

    @staticmethod
    def _record(promised: Ballot | None, entries: list[AcceptedEntry]) -> bytes:
        p = None if promised is None else [promised.round, promised.node]
        return msgspec.msgpack.encode([p, [_enc_entry(e) for e in entries]])

    def close(self) -> None:
        self._log.close()
