"""The file sink's two-phase commit (pipeline/files/commit.py): files are published only once
a checkpoint covering them is agreed, a takeover finishes or discards what earlier owners
left, and - whatever owners crash, between which effects, and whatever a fenced zombie still
renames - every input offset ends up in exactly one published file."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.files.commit import (
    Agreed,
    Closed,
    Delete,
    FileCommits,
    Publish,
    TakeOver,
    TempFile,
    final_name,
    parse_final,
    parse_temp,
    temp_name,
)

P = "job/topic/3"


def f(first: int, end: int, epoch: int = 1) -> TempFile:
    return TempFile(first, end, epoch, "dt=2026-12-04", "parquet")


def test_names_round_trip_and_the_final_name_does_not_depend_on_the_epoch() -> None:
    t = f(100, 250, epoch=7)
    assert temp_name(P, t) == "_tmp/job/topic/3/dt=2026-12-04/e7-100-250.parquet"
    assert parse_temp(P, temp_name(P, t)) == t
    assert final_name(P, t) == final_name(P, f(100, 250, epoch=8))
    assert parse_final(P, final_name(P, t)) == (100, 250)
    assert parse_temp(P, "_tmp/job/topic/3/x.parquet") is None
    assert parse_temp("job/topic/4", temp_name(P, t)) is None


def test_only_closed_files_covered_by_an_agreed_checkpoint_are_published_in_order() -> None:
    c = FileCommits(P)
    assert c.committable(50) is None  # nothing closed: a checkpoint would pass open records
    assert c.step(Closed(f(0, 100))) == []
    assert c.step(Closed(f(100, 180))) == []
    assert c.committable(250) == 180  # records 180.. sit in the open file
    assert c.step(Agreed(100)) == [Publish(temp_name(P, f(0, 100)), final_name(P, f(0, 100)))]
    assert c.step(Agreed(90)) == []  # a late, lower answer changes nothing
    assert c.step(Agreed(180)) == [Publish(temp_name(P, f(100, 180)), final_name(P, f(100, 180)))]
    with pytest.raises(ValueError, match="does not follow"):
        c.step(Closed(f(200, 300)))


def test_takeover_finishes_agreed_files_and_discards_the_rest() -> None:
    c = FileCommits(P)
    temps = (f(0, 100), f(100, 200), f(200, 260), f(260, 300))
    effects = c.step(TakeOver(agreed=200, temps=temps, published=((0, 100),)))
    assert effects == [
        Delete(temp_name(P, f(0, 100))),  # published already: its temp is a leftover
        Publish(temp_name(P, f(100, 200)), final_name(P, f(100, 200))),  # agreed, not renamed
        Delete(temp_name(P, f(200, 260))),  # beyond the agreed offset: replayed from 200
        Delete(temp_name(P, f(260, 300))),
    ]
    assert c.committable(10_000) == 200


def test_a_zombies_overlapping_file_is_never_published() -> None:
    # Epoch 1 wrote [100, 250) and was fenced; epoch 2 resumed at 100 and had [100, 180),
    # [180, 300) agreed, then crashed before renaming. The zombie's file overlaps.
    temps = (f(100, 250, epoch=1), f(100, 180, epoch=2), f(180, 300, epoch=2))
    effects = FileCommits(P).step(TakeOver(agreed=300, temps=temps, published=((0, 100),)))
    assert sorted(effects, key=str) == sorted([
        Delete(temp_name(P, f(100, 250, epoch=1))),
        Publish(temp_name(P, f(100, 180, epoch=2)), final_name(P, f(100, 180))),
        Publish(temp_name(P, f(180, 300, epoch=2)), final_name(P, f(180, 300))),
    ], key=str)  # fmt: skip


# ---------------------------------------------------------------------------------------
# Any history of owners, crashes and zombies: each offset in exactly one published file
# ---------------------------------------------------------------------------------------


class Fs:
    """The file system, as far as the sink sees it: temporary files and final files."""

    def __init__(self) -> None:
        self.temps: dict[str, TempFile] = {}
        self.final: dict[str, tuple[int, int]] = {}

    def apply(self, e: Publish | Delete) -> None:
        if isinstance(e, Delete):
            self.temps.pop(e.temp, None)
            return
        t = self.temps.pop(e.temp, None)
        if t is not None:  # a rename; one whose temp is gone was done by the other owner
            self.final[e.final] = (t.first, t.end)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_every_offset_lands_in_exactly_one_published_file(seed: int) -> None:
    rng = random.Random(seed)
    fs = Fs()
    agreed = 0
    end_of_input = 400
    zombie: tuple[FileCommits, int, int, list[Publish | Delete]] | None = None
    for epoch in range(1, rng.randint(2, 7)):
        last = epoch == 6 or rng.random() < 0.15
        c = FileCommits(P)
        effects = c.step(TakeOver(agreed, tuple(fs.temps.values()), tuple(fs.final.values())))
        if zombie is not None and rng.random() < 0.5:
            # The fenced owner wakes up: it finishes renames of a checkpoint it had agreed,
            # and writes one more temporary file it will never get agreed.
            _, zpos, zepoch, pending = zombie
            for e in pending:
                fs.apply(e)
            extra = TempFile(zpos, zpos + rng.randint(1, 50), zepoch, "b", "jsonl")
            fs.temps[temp_name(P, extra)] = extra
        zombie = None
        crash_at = len(effects) if last else rng.randint(0, len(effects))
        for e in effects[:crash_at]:
            fs.apply(e)
        if crash_at < len(effects):
            continue  # crashed during its takeover
        pos = agreed
        while pos < end_of_input:
            size = min(rng.randint(1, 60), end_of_input - pos)
            t = TempFile(pos, pos + size, epoch, "b" if rng.random() < 0.5 else "c", "jsonl")
            fs.temps[temp_name(P, t)] = t
            c.step(Closed(t))
            pos += size
            if last or rng.random() < 0.5:
                offset = c.committable(pos)
                assert offset == pos
                agreed = offset
                effects = c.step(Agreed(offset))
                cut = len(effects) if last else rng.randint(0, len(effects))
                for e in effects[:cut]:
                    fs.apply(e)
                if cut < len(effects):
                    if rng.random() < 0.5:  # paused, not dead: a zombie later
                        zombie = (c, pos, epoch, effects[cut:])
                    break
            elif rng.random() < 0.2:
                break  # crash with closed files nobody agreed
        if last and pos == end_of_input:
            break
    else:
        # No owner finished: a last one takes over and runs to the end without faults.
        c = FileCommits(P)
        for e in c.step(TakeOver(agreed, tuple(fs.temps.values()), tuple(fs.final.values()))):
            fs.apply(e)
        pos = agreed
        while pos < end_of_input:
            t = TempFile(pos, min(pos + 37, end_of_input), 99, "b", "jsonl")
            fs.temps[temp_name(P, t)] = t
            c.step(Closed(t))
            pos = t.end
        for e in c.step(Agreed(end_of_input)):
            fs.apply(e)
        agreed = end_of_input
    covered = sorted(fs.final.values())
    seen = [o for first, end in covered for o in range(first, end)]
    assert seen == list(range(agreed)), covered  # each offset exactly once, none missing


def _has_output(offset: int) -> bool:
    """Which input offsets produce a row (deterministic, as processing is): two stretches
    produce none (a filter, windows still open)."""
    return not (100 <= offset < 170 or 260 <= offset < 300)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_ranges_without_output_need_no_file_and_every_row_is_published_once(seed: int) -> None:
    """Like the test above, with the runner's rule for empty ranges: a file closes only when
    it holds rows and starts at ``closed_to`` (the chain's end), whatever offset its owner
    resumed from; a range without rows is checkpointed without a file."""
    rng = random.Random(seed)
    fs = Fs()
    agreed = 0
    end_of_input = 400
    for epoch in range(1, 8):
        last = epoch == 7
        c = FileCommits(P)
        effects = c.step(TakeOver(agreed, tuple(fs.temps.values()), tuple(fs.final.values())))
        crash_at = len(effects) if last else rng.randint(0, len(effects))
        for e in effects[:crash_at]:
            fs.apply(e)
        if crash_at < len(effects):
            continue
        pos = agreed  # resume here; the next file still starts at c.closed_to
        rows = False  # rows since the last closed file
        while pos < end_of_input:
            size = min(rng.randint(1, 60), end_of_input - pos)
            rows = rows or any(_has_output(o) for o in range(pos, pos + size))
            pos += size
            if rows and (last or rng.random() < 0.6):
                assert c.closed_to is not None
                t = TempFile(c.closed_to, pos, epoch, "b", "jsonl")
                fs.temps[temp_name(P, t)] = t
                c.step(Closed(t))
                rows = False
            if last or rng.random() < 0.5:
                offset = c.committable(pos, open_rows=rows)
                assert offset is not None
                if offset > agreed:
                    agreed = offset
                effects = c.step(Agreed(offset))
                cut = len(effects) if last else rng.randint(0, len(effects))
                for e in effects[:cut]:
                    fs.apply(e)
                if cut < len(effects):
                    break
            elif not last and rng.random() < 0.2:
                break  # crash: rows in memory and closed files nobody agreed are lost
        if last:
            break
    assert agreed == end_of_input
    covered = sorted(fs.final.values())
    for (_, a_end), (b_first, _) in itertools.pairwise(covered):
        assert a_end <= b_first, covered  # published files never overlap
    seen = [o for first, end in covered for o in range(first, end) if _has_output(o)]
    assert seen == [o for o in range(end_of_input) if _has_output(o)], covered
