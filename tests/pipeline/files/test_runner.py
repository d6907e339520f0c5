"""The file sink's I/O shell on a real local directory: rows wait in memory until a file
closes, a checkpoint never passes rows in no closed file, an agreed checkpoint publishes,
and a takeover finishes or discards what the previous owner left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds

from pipeline.executor.records import FILES_TOPIC, BatchResult, OutRecord
from pipeline.files.runner import PartitionFiles, bucket_of, open_partition

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def sink(url: Path, fmt: str = "parquet", max_records: int = 1000) -> dict[str, Any]:
    return {"kind": "files", "url": str(url), "format": fmt, "roll": "hour",
            "max_records": max_records}  # fmt: skip


def batch(*values: Any) -> BatchResult:
    out = [OutRecord(FILES_TOPIC, b"k", orjson.dumps(v)) for v in values]
    return BatchResult(outputs=[*out, OutRecord("paxline.j.changelog.1", b"sk", b"1")])


def owner(root: Path, epoch: int, agreed: int | None, **kw: Any) -> PartitionFiles:
    files = open_partition(sink(root, **kw), "j", "t", 0, epoch, agreed)
    files.clock = lambda: NOW
    return files


def published(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.*") if "_tmp" not in p.relative_to(root).parts)


def test_rows_are_published_only_once_an_agreed_checkpoint_covers_their_closed_file(
    tmp_path: Path,
) -> None:
    files = owner(tmp_path, 1, None)
    res = batch({"a": 1}, {"a": 2})
    files.take(res, 10)
    assert [r.topic for r in res.outputs] == ["paxline.j.changelog.1"]  # changelogs stay
    files.take(batch({"a": 3}), 20)
    assert files.committable(20, seal=False) == 0  # rows of [0, 20) are in no file yet
    files.close(10)  # e.g. Prepare(10): only batches ending at or before 10
    assert files.committable(20, seal=False) == 10
    assert published(tmp_path) == []
    files.agreed(10)
    [one] = published(tmp_path)
    assert one.parent.relative_to(tmp_path).as_posix() == bucket_of("hour", NOW)
    assert one.name == f"j-t-0-{0:020d}-{10:020d}.parquet"
    assert ds.dataset(str(tmp_path), format="parquet").to_table().to_pylist() == [
        {"a": 1}, {"a": 2},
    ]  # fmt: skip
    assert files.committable(25, seal=True) == 25  # seal: at-least-once closes [10, 25) first
    files.agreed(25)
    rows = ds.dataset(str(tmp_path), format="parquet").to_table().to_pylist()
    assert sorted(r["a"] for r in rows) == [1, 2, 3]


def test_a_range_without_output_is_checkpointed_without_a_file_and_the_next_file_covers_it(
    tmp_path: Path,
) -> None:
    files = owner(tmp_path, 1, None, fmt="jsonl")
    files.take(BatchResult(), 50)  # filtered away: no output
    assert files.committable(50, seal=False) == 50
    files.agreed(50)
    files.take(batch(7), 60)
    files.close(60)
    files.agreed(60)
    [one] = published(tmp_path)
    assert one.name.endswith(f"-{0:020d}-{60:020d}.jsonl")  # the chain stays gap-free
    assert one.read_bytes() == b"7\n"


def test_non_dict_values_become_key_value_columns_and_mixed_types_json_text(
    tmp_path: Path,
) -> None:
    files = owner(tmp_path, 1, None)
    files.take(batch(3, 4), 5)
    files.close(5)
    files.agreed(5)
    files.take(batch(3, "x"), 7)  # no parquet type holds both: the column is JSON text
    files.close(7)
    files.agreed(7)
    first, second = (ds.dataset(str(p), format="parquet").to_table().to_pylist()
                     for p in published(tmp_path))  # fmt: skip
    assert first == [{"key": "k", "value": 3}, {"key": "k", "value": 4}]
    assert second == [{"key": "k", "value": "3"}, {"key": "k", "value": '"x"'}]


def test_files_roll_at_max_records(tmp_path: Path) -> None:
    files = owner(tmp_path, 1, None, fmt="jsonl", max_records=3)
    files.take(batch(1, 2), 2)
    files.take(batch(3, 4), 4)  # 4 rows >= 3: the file closes at 4
    files.take(batch(5), 5)
    assert files.committable(5, seal=False) == 4
    files.agreed(4)
    assert [p.read_bytes() for p in published(tmp_path)] == [b"1\n2\n3\n4\n"]


def test_takeover_publishes_the_agreed_leftovers_and_deletes_the_rest(tmp_path: Path) -> None:
    first = owner(tmp_path, 1, None, fmt="jsonl")
    first.take(batch(1), 10)
    first.close(10)
    first.take(batch(2), 20)
    first.close(20)
    first.take(batch(3), 30)
    first.close(30)
    # The checkpoint at 20 was agreed, then the owner died before renaming anything.
    second = owner(tmp_path, 2, 20, fmt="jsonl")
    assert [p.read_bytes() for p in published(tmp_path)] == [b"1\n", b"2\n"]
    assert not [p for p in (tmp_path / "_tmp").rglob("*") if p.is_file()]  # [20, 30) gone
    second.take(batch(3), 30)  # replayed from 20
    second.close(30)
    second.agreed(30)
    assert [p.read_bytes() for p in published(tmp_path)] == [b"1\n", b"2\n", b"3\n"]
