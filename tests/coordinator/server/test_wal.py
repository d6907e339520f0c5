"""The durable record log: what was appended survives reopening; a torn or corrupted tail
is cut back to the last intact record with a warning instead of a crash."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coordinator.server.wal import RecordLog


def _log_with(path: Path, payloads: list[bytes]) -> None:
    wal = RecordLog(path)
    wal.append(payloads)
    wal.close()


def test_appended_records_survive_reopening_in_order(tmp_path: Path) -> None:
    path = tmp_path / "paxos.log"
    wal = RecordLog(path)
    wal.append([b"a", b"bb"])
    wal.append([b"ccc"])
    wal.append([])
    assert wal.fsyncs == 2
    wal.close()
    assert RecordLog(path).records() == [b"a", b"bb", b"ccc"]


@pytest.mark.parametrize(
    ("damage", "survivors"),
    [
        ("cut inside the last payload", [b"first", b"second"]),
        ("cut inside the last header", [b"first", b"second"]),
        ("flip a byte of the last payload", [b"first", b"second"]),
        ("append zeros", [b"first", b"second", b"third"]),
        ("flip a byte of the middle record", [b"first"]),
    ],
)
def test_damage_is_truncated_to_the_last_good_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, survivors: list[bytes]
) -> None:
    path = tmp_path / "paxos.log"
    _log_with(path, [b"first", b"second", b"third"])
    data = bytearray(path.read_bytes())
    record = 8 + len(b"third")
    if damage == "cut inside the last payload":
        data = data[:-2]
    elif damage == "cut inside the last header":
        data = data[: len(data) - record + 3]
    elif damage == "flip a byte of the last payload":
        data[-1] ^= 0xFF
    elif damage == "append zeros":
        data += b"\x00" * 5
    else:
        data[8 + len(b"first") + 8] ^= 0xFF
    path.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING):
        wal = RecordLog(path)
    assert wal.records() == survivors
    assert "truncating torn tail" in caplog.text
    good_size = sum(8 + len(p) for p in survivors)
    assert path.stat().st_size == good_size

    # The log stays usable: new appends follow the good prefix.
    wal.append([b"after"])
    wal.close()
    assert RecordLog(path).records() == [*survivors, b"after"]


def test_rewrite_replaces_the_log_atomically(tmp_path: Path) -> None:
    path = tmp_path / "paxos.log"
    wal = RecordLog(path)
    wal.append([b"old-1", b"old-2"])
    wal.rewrite([b"compacted"])
    wal.append([b"new"])
    wal.close()
    assert RecordLog(path).records() == [b"compacted", b"new"]
    assert not (tmp_path / "paxos.log.tmp").exists()
