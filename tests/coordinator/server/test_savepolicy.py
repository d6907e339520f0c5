"""Small writes are saved on the loop while inline saves are fast; a slow one sends the next
64 to a thread, after which the loop tries again (coordinator/server/savepolicy.py)."""

from __future__ import annotations

from coordinator.server.savepolicy import SavePolicy

MS = 0.001


def run(policy: SavePolicy, saves: list[tuple[bool, float]]) -> list[bool]:
    """Feeds (snapshot?, seconds) saves; returns where each went (True = inline)."""
    out = []
    for snapshot, seconds in saves:
        inline = policy.inline(snapshot)
        policy.record(inline, snapshot, seconds)
        out.append(inline)
    return out


def test_a_new_node_uses_threads_for_64_saves_then_goes_inline() -> None:
    where = run(SavePolicy(1 * MS), [(False, 0.2 * MS)] * 66)
    assert where == [False] * 64 + [True, True]


def test_one_slow_inline_save_sends_the_next_64_to_a_thread_then_it_tries_again() -> None:
    p = SavePolicy(1 * MS, thread_saves_left=0)
    where = run(p, [(False, 5 * MS)] + [(False, 0.2 * MS)] * 66)
    assert where == [True] + [False] * 64 + [True, True]


def test_slow_looking_thread_saves_do_not_latch_it_in_threads() -> None:
    """Under load a save in a thread measures 2-40 ms (two wake-ups and GIL waits). The old
    policy judged those and needed 64 fast ones in a row, so after one snapshot every save
    stayed in a thread for good; here the 65th small save is tried inline again."""
    p = SavePolicy(1 * MS, thread_saves_left=0)
    saves = [(True, 30 * MS)] + [(False, 0.2 * MS)] + [(False, 5 * MS)] + [(False, 20 * MS)] * 64
    saves += [(False, 0.2 * MS)] * 2
    assert run(p, saves) == [False, True, True] + [False] * 64 + [True, True]


def test_snapshots_always_go_to_a_thread_and_do_not_count() -> None:
    p = SavePolicy(1 * MS, thread_saves_left=1)
    assert run(p, [(True, 0.1 * MS)] * 3 + [(False, 0.1 * MS), (False, 0.1 * MS)]) == [
        False, False, False, False, True,
    ]  # fmt: skip


def test_zero_limit_always_uses_a_thread() -> None:
    assert run(SavePolicy(0.0, thread_saves_left=0), [(False, 0.0)] * 3) == [False] * 3
