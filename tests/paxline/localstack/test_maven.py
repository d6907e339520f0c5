"""The jar pins: a cache is trusted only when every jar has its pinned bytes and no jar is
unpinned; the pin files are plain ``sha256sum`` output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from paxline.localstack import hdfs, kafka, maven


def _jar(d: Path, name: str, body: bytes) -> str:
    (d / name).write_bytes(body)
    return hashlib.sha256(body).hexdigest()


def test_pins_read_sha256sum_output_text_and_binary_mode() -> None:
    text = f"{'a' * 64}  one.jar\n\n{'b' * 64} *two.jar\n"
    assert maven.parse_pins(text) == {"one.jar": "a" * 64, "two.jar": "b" * 64}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nothing", None),
        ("altered", "SHA-256"),
        ("missing", "missing ['b.jar']"),
        ("extra", "unpinned ['c.jar']"),
    ],
)
def test_verify_accepts_only_the_pinned_bytes(tmp_path: Path, change: str, message: str) -> None:
    pins = {"a.jar": _jar(tmp_path, "a.jar", b"A"), "b.jar": _jar(tmp_path, "b.jar", b"B")}
    if change == "altered":
        (tmp_path / "a.jar").write_bytes(b"A, tampered")
    elif change == "missing":
        (tmp_path / "b.jar").unlink()
    elif change == "extra":
        _jar(tmp_path, "c.jar", b"C")
    if message is None:
        maven.verify(tmp_path, pins, "test")
    else:
        with pytest.raises(maven.JarFetchError, match=message.replace("[", r"\[")):
            maven.verify(tmp_path, pins, "test")


def test_a_complete_cache_is_returned_without_maven(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / ".complete").write_text("x")
    assert maven.fetch_jars(libs, "<project/>", {}, "test") == libs


def test_the_default_kafka_and_hdfs_versions_are_pinned() -> None:
    pins = kafka.pinned_sha256(kafka.DEFAULT_VERSION)
    assert pins is not None and f"kafka_2.13-{kafka.DEFAULT_VERSION}.jar" in pins
    assert all(len(h) == 64 for h in pins.values())
    assert kafka.pinned_sha256("0.0.1") is None
    assert f"hadoop-client-minicluster-{hdfs.VERSION}.jar" in hdfs.PINNED_SHA256


def test_the_kafka_jars_every_test_runs_on_match_their_pins() -> None:
    """The session's broker jars (fetched by the fixtures, hash-checked on a fresh machine)
    are the pinned ones; a cache filled before the pins existed is checked here."""
    libs = kafka.fetch(quiet=True)
    pins = kafka.pinned_sha256(kafka.DEFAULT_VERSION)
    assert pins is not None
    maven.verify(libs, pins, "kafka")
