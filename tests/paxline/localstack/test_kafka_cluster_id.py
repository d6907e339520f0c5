"""KRaft cluster ids: made the way Kafka makes them, and formatted whatever their first
character (issue 21: one random id in 64 began with "-" and the storage tool read it as an
option, so a broker start failed at random)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from paxline.localstack import kafka

# url-safe base64 maps the first 6 bits of the first byte: 0xF8 -> "-", 0xFC -> "_".
DASH_FIRST = bytes([0xF8]) + bytes(15)
UNDERSCORE_FIRST = bytes([0xFC]) + bytes(15)
PLAIN = bytes(range(16))


@pytest.mark.parametrize(
    ("draws", "expected_first"),
    [
        ([PLAIN], "A"),  # 0x00 -> "A": taken at once
        ([UNDERSCORE_FIRST], "_"),  # Kafka's own ids may begin with "_"
        ([DASH_FIRST, PLAIN], "A"),  # "-" is drawn again, as Kafka's Uuid.randomUuid does
        ([DASH_FIRST, DASH_FIRST, UNDERSCORE_FIRST], "_"),
    ],
)
def test_a_cluster_id_never_begins_with_a_dash(draws: list[bytes], expected_first: str) -> None:
    source = iter(draws)
    cid = kafka.cluster_id(lambda: next(source))
    assert cid[0] == expected_first
    assert len(cid) == 22  # 16 bytes, unpadded, like Kafka's
    assert next(source, None) is None, "drew more ids than needed"


def test_random_cluster_ids_never_begin_with_a_dash() -> None:
    ids = [kafka.cluster_id() for _ in range(2000)]  # ~31 would begin with "-" before the fix
    assert not [c for c in ids if c.startswith("-")]


@pytest.mark.integration
@pytest.mark.parametrize("first", ["-", "_"])
def test_storage_formats_with_an_id_that_begins_with(first: str, tmp_path: Path) -> None:
    """The real storage tool of the pinned Kafka accepts an operator-given id whatever its
    first character: the id travels as `--cluster-id=<id>`."""
    cid = first + kafka.cluster_id()[1:]
    libs = kafka.fetch()
    props = tmp_path / "server.properties"
    props.write_text(kafka._properties(tmp_path, 19092, 19093))
    kafka.format_storage(libs, tmp_path, props, cid)
    meta = (tmp_path / "logs" / "meta.properties").read_text()
    assert f"cluster.id={cid}" in meta.splitlines()


def test_draws_stop_as_soon_as_an_id_is_usable() -> None:
    counter = itertools.count()

    def draw() -> bytes:
        return DASH_FIRST if next(counter) < 5 else PLAIN

    assert kafka.cluster_id(draw).startswith("A")
    assert next(counter) == 6
