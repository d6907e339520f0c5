"""De-duplication of repartitioned records by provenance: a record produced twice upstream
(replay after a crash, or a zombie owner) is applied once downstream."""

from __future__ import annotations

from pipeline.executor.provenance import ORIGIN_HEADER, SRC_HEADER, dedup, stamp
from pipeline.executor.records import InRecord
from pipeline.state import MemoryStore


def _rec(offset: int, upstream: int, src_offset: int, n: int = 0) -> InRecord:
    src = InRecord("in", upstream, src_offset, None, None, 0)
    return InRecord("rep", 0, offset, b"k", b"v", 0, stamp(src, n))


def test_replayed_and_interleaved_duplicates_are_dropped_once_applied() -> None:
    store = MemoryStore()
    first = [_rec(0, 1, 10), _rec(1, 1, 10, 1), _rec(2, 2, 5), _rec(3, 1, 11)]
    kept, hw = dedup(first, store)
    assert kept == first
    store.apply(hw, {}, end_offset=4)
    # Upstream partition 1 replays from offset 10 (its checkpoint) while partition 2 moves on.
    second = [_rec(4, 1, 10), _rec(5, 1, 10, 1), _rec(6, 2, 6), _rec(7, 1, 11), _rec(8, 1, 12)]
    kept, hw = dedup(second, store)
    assert [r.offset for r in kept] == [6, 8]
    assert hw == {"paxline.hw:1": b"12:0", "paxline.hw:2": b"6:0"}


def test_records_without_provenance_pass_through() -> None:
    plain = [InRecord("t", 0, i, None, b"x", 0) for i in range(3)]
    kept, hw = dedup(plain, MemoryStore())
    assert kept == plain and hw == {}
    assert stamp(plain[1], 2) == ((SRC_HEADER, b"0:1:2"), (ORIGIN_HEADER, b"t:0:1"))
