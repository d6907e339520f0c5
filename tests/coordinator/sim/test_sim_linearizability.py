"""The WGL checker itself: known-good and known-bad register histories."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.sim.kv import kv_step
from coordinator.sim.linearizability import HistOp, check_key


def op(
    c: str, kind: str, arg: str, inv: int, resp: int | None, res: str | None, exp: str | None = None
) -> HistOp:
    return HistOp(c, "k", kind, arg, exp, inv, resp, res)


def test_sequential_history_is_linearizable() -> None:
    h = [op("a", "put", "1", 0, 1, "ok"), op("b", "get", "", 2, 3, "1")]
    assert check_key(h) is True


def test_stale_read_after_completed_write_is_not() -> None:
    h = [
        op("a", "put", "1", 0, 1, "ok"),
        op("a", "put", "2", 2, 3, "ok"),
        op("b", "get", "", 4, 5, "1"),
    ]
    assert check_key(h) is False


def test_concurrent_read_may_see_either_value() -> None:
    base = [op("a", "put", "1", 0, 1, "ok"), op("a", "put", "2", 2, 6, "ok")]
    assert check_key([*base, op("b", "get", "", 3, 4, "1")]) is True
    assert check_key([*base, op("b", "get", "", 3, 4, "2")]) is True


def test_pending_write_may_or_may_not_take_effect() -> None:
    pending = op("a", "put", "x", 0, None, None)
    assert check_key([pending, op("b", "get", "", 5, 6, "x")]) is True
    assert check_key([pending, op("b", "get", "", 5, 6, "")]) is True
    assert check_key([pending, op("b", "get", "", 5, 6, "y")]) is False


def test_lost_append_is_detected() -> None:
    h = [
        op("a", "append", "1,", 0, 1, "1,"),
        op("b", "append", "2,", 2, 3, "2,"),  # the first append vanished
    ]
    assert check_key(h) is False


def test_cas_semantics() -> None:
    h = [
        op("a", "put", "1", 0, 1, "ok"),
        op("b", "cas", "2", 2, 3, "true", exp="1"),
        op("c", "cas", "3", 4, 5, "false", exp="1"),
        op("c", "get", "", 6, 7, "2"),
    ]
    assert check_key(h) is True


@given(
    st.lists(st.tuples(st.sampled_from(["put", "append", "get"]), st.integers(0, 9)), max_size=12)
)
def test_any_sequential_execution_is_accepted(script: list[tuple[str, int]]) -> None:
    value, t, hist = "", 0, []
    for kind, n in script:
        value, result = kv_step(value, kind, str(n), None)
        hist.append(op("a", kind, str(n), t, t + 1, result))
        t += 2
    assert check_key(hist) is True
