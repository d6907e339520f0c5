"""`paxline cluster add-node / remove-node / replace-node`: bad input is one line and exit 2,
before anything reaches a coordinator (the happy path runs against real processes in
tests/coordinator/server/test_cluster_reconfiguration.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from paxline.cli.cluster import parse_member
from paxline.cli.main import app

# Nothing listens here: a command that got past validation would fail with exit 1, not 2.
NOWHERE = "http://127.0.0.1:9"


def test_parse_member() -> None:
    assert parse_member("4=c4:9701") == (4, "c4:9701")
    assert parse_member("12=[::1]:9701") == (12, "[::1]:9701")
    for bad in ("4", "x=c4:9701", "0=c4:9701", "4=c4", "4=:9701", "4=c4:0", "4=c4:70000"):
        with pytest.raises(ValueError):
            parse_member(bad)


@pytest.mark.parametrize(
    "args",
    [
        ["add-node", "4=nohost"],
        ["add-node", "four=c4:9701"],
        ["remove-node", "x"],
        ["remove-node", "0"],
        ["replace-node", "3", "3=c3:9701"],
        ["replace-node", "x", "6=c6:9701"],
        ["replace-node", "3", "6=c6"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(
        app, ["cluster", *args, "--coordinators", NOWHERE], env={"PAXLINE_API_TOKEN": "t" * 8}
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_a_membership_change_needs_the_token() -> None:
    result = CliRunner().invoke(
        app, ["cluster", "remove-node", "3", "--coordinators", NOWHERE],
        env={"PAXLINE_API_TOKEN": ""},
    )  # fmt: skip
    assert result.exit_code == 2 and "PAXLINE_API_TOKEN" in result.output


def test_an_unreachable_cluster_is_exit_1() -> None:
    result = CliRunner().invoke(
        app, ["cluster", "remove-node", "3", "--coordinators", NOWHERE, "--timeout", "0.5"],
        env={"PAXLINE_API_TOKEN": "t" * 8},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("error: remove node 3 not confirmed"), result.output
