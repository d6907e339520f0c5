"""The CLI finds its stack from any directory (issue 14): $PAXLINE_HOME, else the nearest
.paxline at or above the current directory, else the stack last started with `paxline up`,
else the per-user default; and it says so when it found none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paxline import settings
from pipeline.lag import readable_end


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PAXLINE_HOME", raising=False)
    for name in ("PAXLINE_COORDINATORS", "PAXLINE_KAFKA", "PAXLINE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


def _stack(d: Path, port: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "stack.json").write_text(json.dumps({
        "kafka": f"127.0.0.1:{port}", "redis": "redis://127.0.0.1:1/0", "token": "t",
        "coordinators": [f"http://127.0.0.1:{port}"], "workers": {},
    }))  # fmt: skip
    return d


def test_the_rules_in_order(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = user / "clone" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    nothing = settings.locate(deep)
    assert nothing.path == user / "state" / "paxline" and not nothing.exists
    assert "no paxline stack found" in settings.resolve().origin

    last = _stack(user / "somewhere" / ".paxline", 11)
    settings.remember(last)
    assert settings.locate(deep).path == last

    near = _stack(user / "clone" / ".paxline", 12)
    assert settings.locate(deep).path == near  # the nearest .paxline wins over the last one
    assert settings.resolve().kafka == "127.0.0.1:12"

    env = _stack(user / "env", 13)
    monkeypatch.setenv("PAXLINE_HOME", str(env))
    assert settings.locate(deep).how == "$PAXLINE_HOME"
    assert settings.resolve().coordinators == ["http://127.0.0.1:13"]
    assert settings.resolve(coordinators="http://x:1").coordinators == ["http://x:1"]


def test_a_recorded_stack_that_is_gone_falls_back_to_the_default(user: Path) -> None:
    settings.remember(user / "gone")
    assert settings.locate(user).path == user / "state" / "paxline"


@pytest.mark.parametrize(
    ("kafka_end", "read_to", "fetched", "end"),
    [
        (11, 10, 11, 10),  # caught up behind one commit marker: lag 0
        (14, 10, 12, 12),  # two markers passed, two records still to read
        (11, 10, 10, 11),  # consumer not past read_to: Kafka's end as is
        (11, None, 11, 11),  # nothing read yet
    ],
)
def test_readable_end_skips_offsets_the_consumer_passed_without_records(
    kafka_end: int, read_to: int | None, fetched: int | None, end: int
) -> None:
    assert readable_end(kafka_end, read_to, fetched) == end
