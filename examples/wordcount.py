"""Word count into a Redis materialised view: ``paxline submit examples/wordcount.py:job``.

Lines are split into words, non-alphabetic tokens dropped and words lower-cased; ``key_by``
sends each word through ``paxline.wordcount.repartition.1`` so every occurrence of a word is
counted in one partition, and the view ``wordcount`` maps word -> latest count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pipeline.job import Job

__all__ = ["expected", "job", "words"]


def words(line: str) -> list[str]:
    return [w.lower() for w in line.split() if w.isalpha()]


job = (
    Job("wordcount", guarantee="at-least-once")
    .source("text", partitions=4, value="str")
    .flat_map(str.split)
    .filter(str.isalpha)
    .map(str.lower)
    .key_by(lambda w: w)
    .count()
    .to_redis("wordcount")
)


def expected(lines: Iterable[str]) -> dict[str, int]:
    """The view after consuming ``lines``: word -> count."""
    return dict(Counter(w for line in lines for w in words(line)))
