"""Worked examples of the assignor: what a reader should expect in common situations."""

from __future__ import annotations

import pytest

from coordinator.assignor import assign, moved, targets

TP = tuple[str, int]


def tps(n: int, topic: str = "t") -> list[TP]:
    return [(topic, i) for i in range(n)]


def counts(result: dict[TP, str | None]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for owner in result.values():
        out[owner] = out.get(owner, 0) + 1
    return out


BIG = 1_000


@pytest.mark.parametrize(
    ("n", "workers", "expected"),
    [
        pytest.param(0, {"a": BIG}, {}, id="no partitions"),
        pytest.param(4, {}, {None: 4}, id="no workers leaves everything unassigned"),
        pytest.param(4, {"a": BIG}, {"a": 4}, id="one worker takes all"),
        pytest.param(5, {"a": BIG, "b": BIG}, {"a": 3, "b": 2}, id="odd split, lower id first"),
        pytest.param(
            2,
            {"a": BIG, "b": BIG, "c": BIG},
            {"a": 1, "b": 1, None: 0},
            id="more workers than partitions",
        ),
        pytest.param(6, {"a": 1, "b": BIG}, {"a": 1, "b": 5}, id="capacity caps a worker"),
        pytest.param(
            6,
            {"a": 2, "b": 2},
            {"a": 2, "b": 2, None: 2},
            id="beyond total capacity stays unassigned",
        ),
        pytest.param(3, {"a": 0, "b": BIG}, {"b": 3}, id="capacity zero drains a worker"),
    ],
)
def test_fresh_assignment_counts(
    n: int, workers: dict[str, int], expected: dict[str | None, int]
) -> None:
    result = assign(tps(n), workers, {})
    got = counts(result)
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    assert sorted(result) == tps(n)


def test_fresh_assignment_deals_partitions_round_robin_by_worker_id() -> None:
    """Interleaved, so a job's stages (source and repartition topics) spread over workers."""
    assert assign(tps(5), {"b": BIG, "a": BIG}, {}) == {
        ("t", 0): "a",
        ("t", 1): "b",
        ("t", 2): "a",
        ("t", 3): "b",
        ("t", 4): "a",
    }


def test_a_joining_worker_takes_only_what_balance_requires() -> None:
    before = assign(tps(6), {"a": BIG, "b": BIG}, {})
    after = assign(tps(6), {"a": BIG, "b": BIG, "c": BIG}, before)
    assert counts(after) == {"a": 2, "b": 2, "c": 2}
    assert len(moved(before, after)) == 2
    assert all(after[p] == "c" for p in moved(before, after))


def test_a_leaving_worker_moves_only_its_own_partitions_when_balance_allows() -> None:
    before = assign(tps(6), {"a": BIG, "b": BIG, "c": BIG}, {})
    after = assign(tps(6), {"a": BIG, "b": BIG}, before)
    assert set(moved(before, after)) == {p for p, w in before.items() if w == "c"}


def test_extra_shares_go_to_workers_already_holding_more() -> None:
    # b holds 3, a holds 1: with 5 partitions over 2 workers, b keeps its 3 (no moves
    # beyond giving the one orphan to a).
    previous: dict[TP, str | None] = {("t", 0): "b", ("t", 1): "b", ("t", 2): "b", ("t", 3): "a"}
    after = assign(tps(5), {"a": BIG, "b": BIG}, previous)
    assert moved(previous, after) == [("t", 4)]
    assert after[("t", 4)] == "a"


def test_previous_may_mention_gone_workers_and_partitions() -> None:
    previous: dict[TP, str | None] = {("t", 0): "ghost", ("t", 9): "a", ("u", 0): "a"}
    after = assign(tps(2), {"a": BIG}, previous)
    assert after == {("t", 0): "a", ("t", 1): "a"}


def test_duplicate_partitions_are_counted_once() -> None:
    assert assign([("t", 1), ("t", 0), ("t", 1)], {"a": BIG}, {}) == {("t", 0): "a", ("t", 1): "a"}


def test_stable_output_is_a_fixed_point() -> None:
    first = assign(tps(7), {"a": BIG, "b": BIG, "c": 1}, {})
    assert assign(tps(7), {"c": 1, "b": BIG, "a": BIG}, first) == first


@pytest.mark.parametrize(
    ("total", "caps", "held", "expected"),
    [
        pytest.param(7, {"a": 9, "b": 9, "c": 9}, {}, {"a": 3, "b": 2, "c": 2}, id="ties by id"),
        pytest.param(
            7, {"a": 9, "b": 9, "c": 9}, {"c": 3}, {"a": 2, "b": 2, "c": 3}, id="extra to holder"
        ),
        pytest.param(7, {"a": 1, "b": 9, "c": 9}, {}, {"a": 1, "b": 3, "c": 3}, id="capped worker"),
        pytest.param(9, {"a": 1, "b": 2}, {}, {"a": 1, "b": 2}, id="capacity short"),
        pytest.param(3, {}, {}, {}, id="nobody"),
    ],
)
def test_targets(
    total: int, caps: dict[str, int], held: dict[str, int], expected: dict[str, int]
) -> None:
    assert targets(total, caps, held) == expected


def test_negative_capacity_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="negative"):
        assign(tps(1), {"a": -1}, {})
