"""DiskStorage keeps exactly what MemoryStorage keeps, across reopen and compaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.paxos.storage import MemoryStorage
from coordinator.paxos.types import AcceptedEntry, Ballot, Batch, Command, PersistUpdate, Snapshot
from coordinator.server.storage import DiskStorage, StorageCorruption


def _entry(slot: int, rnd: int, payload: bytes) -> AcceptedEntry:
    return AcceptedEntry(slot, Ballot(rnd, 1), Batch((Command("c", slot, payload),)))


UPDATES = [
    PersistUpdate(promised=Ballot(1, 1)),
    PersistUpdate(accepted=(_entry(1, 1, b"a"), _entry(2, 1, b"b"))),
    PersistUpdate(promised=Ballot(2, 3), accepted=(_entry(2, 2, b"b2"),)),
    PersistUpdate(accepted=(_entry(3, 2, b"c"),), snapshot=Snapshot(2, b"state@2")),
    PersistUpdate(promised=Ballot(1, 9)),  # lower ballot: never regresses
    PersistUpdate(accepted=(_entry(4, 2, b"d"),)),
]


@pytest.mark.parametrize("prefix", range(len(UPDATES) + 1))
def test_reopened_disk_storage_loads_what_memory_storage_holds(tmp_path: Path, prefix: int) -> None:
    disk, memory = DiskStorage(tmp_path), MemoryStorage()
    for update in UPDATES[:prefix]:
        disk.save(update)
        memory.save(update)
    disk.close()
    assert DiskStorage(tmp_path).load() == memory.load()


def test_a_damaged_snapshot_is_refused_not_ignored(tmp_path: Path) -> None:
    disk = DiskStorage(tmp_path)
    disk.save(PersistUpdate(snapshot=Snapshot(5, b"state")))
    disk.close()
    blob = bytearray((tmp_path / "snapshot.bin").read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / "snapshot.bin").write_bytes(bytes(blob))
    with pytest.raises(StorageCorruption, match=r"snapshot\.bin"):
        DiskStorage(tmp_path)
