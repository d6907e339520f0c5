"""The exactly-once state view: the open group's and the committing group's writes over Redis."""

from __future__ import annotations

from pipeline.eos import Overlay
from pipeline.state import MemoryStore


def test_overlay_answers_in_the_order_asked() -> None:
    """Newest layer first, then Redis; a tombstone in a layer hides the stored value."""
    store = MemoryStore()
    store.apply({"a": b"1", "c": b"3"}, {}, end_offset=1)
    state = Overlay(store, [{"b": b"2"}, {"c": None}])
    assert list(state.get_many(["a", "b", "c", "d"]).items()) == [
        ("a", b"1"),
        ("b", b"2"),
        ("c", None),
        ("d", None),
    ]
