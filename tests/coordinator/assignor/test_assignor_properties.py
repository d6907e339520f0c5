"""Properties the assignor guarantees for any input (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.assignor import assign, moved

TP = tuple[str, int]
Assignment = dict[TP, str | None]

WORKER_IDS = ["w0", "w1", "w2", "w3", "w4", "w5"]
UNLIMITED = 10_000

partitions_st = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 12)), max_size=30, unique=True
)
workers_st = st.dictionaries(st.sampled_from(WORKER_IDS), st.integers(0, 8), max_size=6)
unlimited_workers_st = st.lists(st.sampled_from(WORKER_IDS), unique=True, max_size=6).map(
    lambda ws: dict.fromkeys(ws, UNLIMITED)
)


@st.composite
def previous_st(
    draw: st.DrawFn, parts: list[TP], pool: tuple[str, ...] = (*WORKER_IDS, "gone")
) -> Assignment:
    owners = st.one_of(st.none(), st.sampled_from(pool))
    return {p: draw(owners) for p in parts}


def load(result: Assignment) -> dict[str, int]:
    out: dict[str, int] = {}
    for owner in result.values():
        if owner is not None:
            out[owner] = out.get(owner, 0) + 1
    return out


def assert_balanced(parts: list[TP], workers: dict[str, int], result: Assignment) -> None:
    counts = load(result)
    assert set(result) == set(parts)
    assert set(counts) <= set(workers), "only live workers own partitions"
    for w, n in counts.items():
        assert n <= workers[w], f"{w} over capacity"
    assert sum(counts.values()) == min(len(parts), sum(workers.values()))
    for a, b in itertools.permutations(workers, 2):
        na, nb = counts.get(a, 0), counts.get(b, 0)
        assert na <= nb + 1 or nb == workers[b], f"{a}={na} vs {b}={nb} unbalanced"


@given(data=st.data(), parts=partitions_st, workers=workers_st)
def test_balanced_within_one_except_at_capacity(
    data: st.DataObject, parts: list[TP], workers: dict[str, int]
) -> None:
    previous = data.draw(previous_st(parts))
    assert_balanced(parts, workers, assign(parts, workers, previous))


@given(data=st.data(), parts=partitions_st, workers=workers_st)
def test_repeatable_whatever_the_input_order(
    data: st.DataObject, parts: list[TP], workers: dict[str, int]
) -> None:
    previous = data.draw(previous_st(parts))
    shuffled_parts = data.draw(st.permutations(parts))
    shuffled_workers = dict(data.draw(st.permutations(list(workers.items()))))
    shuffled_previous = dict(data.draw(st.permutations(list(previous.items()))))
    assert assign(parts, workers, previous) == assign(
        shuffled_parts, shuffled_workers, shuffled_previous
    )


@given(data=st.data(), parts=partitions_st, workers=workers_st)
def test_output_is_a_fixed_point(
    data: st.DataObject, parts: list[TP], workers: dict[str, int]
) -> None:
    once = assign(parts, workers, data.draw(previous_st(parts)))
    assert assign(parts, workers, once) == once


@given(data=st.data(), parts=partitions_st, workers=workers_st)
def test_a_partition_leaves_a_live_owner_only_if_that_owner_sheds(
    data: st.DataObject, parts: list[TP], workers: dict[str, int]
) -> None:
    previous = data.draw(previous_st(parts))
    result = assign(parts, workers, previous)
    held = load({p: o for p, o in previous.items() if o in workers})
    now = load(result)
    for p in moved(previous, result):
        old = previous.get(p)
        if old in workers:
            assert old is not None
            assert now.get(old, 0) < held[old], f"{old} lost {p} without shedding"


@given(parts=partitions_st, workers=unlimited_workers_st, joiner=st.sampled_from(["x", "y"]))
def test_a_joining_worker_only_receives(
    parts: list[TP], workers: dict[str, int], joiner: str
) -> None:
    before = assign(parts, workers, {})
    after = assign(parts, {**workers, joiner: UNLIMITED}, before)
    for p in moved(before, after):
        # Unassigned partitions only exist with no workers; otherwise moves go to the joiner.
        assert after[p] == joiner
    assert len(moved(before, after)) == load(after).get(joiner, 0)


@given(parts=partitions_st, workers=unlimited_workers_st.filter(bool), data=st.data())
def test_a_leaving_worker_moves_only_its_own_partitions(
    parts: list[TP], workers: dict[str, int], data: st.DataObject
) -> None:
    before = assign(parts, workers, {})
    leaver = data.draw(st.sampled_from(sorted(workers)))
    rest = {w: c for w, c in workers.items() if w != leaver}
    after = assign(parts, rest, before)
    assert set(moved(before, after)) == {p for p, w in before.items() if w == leaver}


def is_balanced(workers: dict[str, int], candidate: Assignment, assignable: int) -> bool:
    counts = dict.fromkeys(workers, 0)
    for owner in candidate.values():
        if owner is not None:
            counts[owner] += 1
    return (
        sum(counts.values()) == assignable
        and all(counts[w] <= workers[w] for w in workers)
        and all(
            counts[a] <= counts[b] + 1 or counts[b] == workers[b] for a in workers for b in workers
        )
    )


def _moves(previous: Assignment, result: Assignment) -> int:
    return sum(1 for p, o in result.items() if previous.get(p) != o)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    parts=st.lists(st.tuples(st.just("t"), st.integers(0, 5)), max_size=5, unique=True),
    workers=st.dictionaries(st.sampled_from(["w0", "w1", "w2"]), st.integers(0, 4), max_size=3),
)
def test_moves_are_minimal_among_balanced_assignments(
    data: st.DataObject, parts: list[TP], workers: dict[str, int]
) -> None:
    """Brute force: no balanced, capacity-respecting assignment moves fewer partitions."""
    previous = data.draw(previous_st(parts, ("w0", "w1", "w2", "gone")))
    result = assign(parts, workers, previous)
    options: list[str | None] = [None, *sorted(workers)]
    assignable = min(len(parts), sum(workers.values()))
    best = None
    for owners in itertools.product(options, repeat=len(parts)):
        candidate = dict(zip(sorted(parts), owners, strict=True))
        if not is_balanced(workers, candidate, assignable):
            continue
        cost = _moves(previous, candidate)
        best = cost if best is None else min(best, cost)
    assert best is not None
    assert _moves(previous, result) == best
