"""Changelog records and restore decisions, without I/O (issue 16): what a stateful stage
logs for a batch, how the log folds back into state, and which applied offset a restore
writes under each guarantee."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pipeline.changelog import END_HEADER, Snapshot, changelog_topic, fold, records
from pipeline.errors import PipelineError
from pipeline.executor.records import BatchResult
from pipeline.restore import needs_restore, restore_partition


def _res(state: dict[str, bytes | None], view: dict[str, bytes | None]) -> BatchResult:
    return BatchResult(state_writes=state, view_writes=view)


def test_a_batch_logs_each_changed_key_to_its_input_partition_with_the_batch_end() -> None:
    out = records(changelog_topic("j", 1), 3, _res({"a": b"1", "b": None}, {"a": b"1"}), 70)
    assert changelog_topic("j", 1) == "paxline.j.changelog.1"
    assert [(r.topic, r.partition, r.key, r.value) for r in out] == [
        ("paxline.j.changelog.1", 3, b"sa", b"1"),
        ("paxline.j.changelog.1", 3, b"sb", None),  # a tombstone: compaction forgets it
        ("paxline.j.changelog.1", 3, b"va", b"1"),
    ]
    assert all(r.headers == ((END_HEADER, b"70"),) for r in out)


def test_a_batch_that_changed_nothing_logs_nothing() -> None:
    assert records("t", 0, BatchResult(), 5) == []


def _as_read(batch: BatchResult, partition: int, end: int) -> list:  # type: ignore[type-arg]
    return [(r.key, r.value, list(r.headers)) for r in records("t", partition, batch, end)]


def test_folding_keeps_the_last_value_of_each_key_and_the_highest_end() -> None:
    log = [
        _as_read(_res({"a": b"1", "b": b"1"}, {"a": b"1"}), 0, 10),
        _as_read(_res({"a": b"2", "b": None}, {"a": b"2", "z": None}), 0, 20),
    ]
    snap = fold(log)
    assert snap.state == {"a": b"2", "b": None}
    assert snap.view == {"a": b"2", "z": None}
    assert (snap.end, snap.records) == (20, 7)
    assert fold([]) == Snapshot()


@pytest.mark.parametrize(
    ("applied", "committed", "restore"),
    [
        (None, None, False),  # nothing committed yet: nothing to restore
        (None, 10, True),  # Redis empty (FLUSHALL, lost data files)
        (5, 10, True),  # behind the committed point
        (10, 10, False),
        (12, 10, False),  # ahead: reconcile rolls back (EOS) or resumes after it (ALO)
    ],
)
def test_redis_is_restored_only_when_behind_the_committed_point(
    applied: int | None, committed: int | None, restore: bool
) -> None:
    assert needs_restore(applied, committed) is restore


class _Target:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, bytes | None], dict[str, bytes | None], int | None]] = []

    def restore(
        self,
        state: Mapping[str, bytes | None],
        view: Mapping[str, bytes | None],
        applied: int | None,
    ) -> None:
        self.calls.append((dict(state), dict(view), applied))


LOG = [_as_read(_res({"a": b"3"}, {"a": b"3"}), 0, 40)]


def test_exactly_once_restores_the_state_at_kafkas_commit_point() -> None:
    t = _Target()
    # The last groups changed no key (a filter dropped them all): K is still the offset.
    assert restore_partition(name="p", read=lambda: LOG, target=t, committed=55,
                             exactly_once=True) == 55  # fmt: skip
    assert t.calls == [({"a": b"3"}, {"a": b"3"}, 55)]


def test_exactly_once_refuses_a_changelog_past_the_commit_point() -> None:
    with pytest.raises(PipelineError, match="past Kafka's commit point"):
        restore_partition(name="p", read=lambda: LOG, target=_Target(), committed=30,
                          exactly_once=True)  # fmt: skip


@pytest.mark.parametrize(("agreed", "applied"), [(30, 40), (55, 55), (None, 40)])
def test_at_least_once_resumes_after_the_last_logged_batch_or_the_agreed_offset(
    agreed: int | None, applied: int
) -> None:
    """Changelog records are flushed before state is applied, so they may be past the agreed
    offset; their outputs were flushed too: resume after them, as `reconcile` does."""
    t = _Target()
    seen: list[int] = []
    got = restore_partition(name="p", read=lambda: LOG, target=t, committed=agreed,
                            exactly_once=False, progress=seen.append)  # fmt: skip
    assert got == applied and t.calls[0][2] == applied
    assert seen == [2]  # records read so far, after each batch


def test_a_restoring_partition_is_reported_like_a_stall_with_the_records_read() -> None:
    """The dashboard's Status column and `paxline status` show a restore in progress: the
    partition is not processing, since when, and how far the restore has read."""
    from pipeline.changelog import restoring_progress

    restoring = {("j", "in", 1): (100.0, 12345), ("j", "in", 0): (90.0, 0)}
    got = restoring_progress(restoring, skip={("j", "in", 1)}, ends={("j", "in", 0): 7})
    assert len(got) == 1
    p = got[0]
    assert (p.job, p.topic, p.partition, p.position, p.end) == ("j", "in", 0, None, 7)
    assert p.stalled == "restoring state from the changelog (0 records read)"
    assert p.stalled_since == 90.0
    shown = restoring_progress(restoring, skip=(), ends={})
    assert [p.stalled for p in shown][
        1
    ] == "restoring state from the changelog (12,345 records read)"
