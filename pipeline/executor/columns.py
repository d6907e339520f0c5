"""Column-wise loops over a batch: the stateless hot path.

Stateless operators run over the whole batch as one tight loop per operator, with no
per-record objects. A loop that hits an exception records it and resumes after the failing
element instead of re-running the batch, so user functions are called exactly once per
element: a function with side effects (a counter, a log line) must not see a value twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

__all__ = ["FAILED", "Errors", "col_filter", "col_flat", "col_map", "describe"]

FAILED: Any = object()
"""Stands in for the result of an element whose call raised (``col_map``)."""

Errors = list[tuple[int, Exception]]
"""``(position in the column, exception)`` for every element whose call raised."""


def col_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], Errors]:
    out: list[Any] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(fn(x))
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append(FAILED)
            start = len(out)


def col_filter(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[bool], Errors]:
    out: list[bool] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(True if fn(x) else False)  # noqa: SIM210 - truthiness may raise here
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append(False)
            start = len(out)


def col_flat(
    fn: Callable[[Any], Iterable[Any]], items: Sequence[Any]
) -> tuple[list[list[Any]], Errors]:
    out: list[list[Any]] = []
    append = out.append
    errors: Errors = []
    start = 0
    while True:
        try:
            for x in items if start == 0 else islice(items, start, None):
                append(list(fn(x)))
            return out, errors
        except Exception as exc:
            errors.append((len(out), exc))
            append([])
            start = len(out)


def describe(exc: BaseException) -> str:
    """Error text with the type's name, because many messages alone (a KeyError's) say little."""
    return f"{type(exc).__name__}: {exc}"
