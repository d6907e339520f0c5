"""Values the local stack passes on command lines cannot be read as options, whatever their
first character (issue 21's class of bug: a data directory named "-x" or a value beginning
with "-" turned into a usage error at start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from paxline.cli.main import app
from paxline.localstack.coordinators import LocalCluster


def parsed_params(args: list[str]) -> dict[str, Any]:
    """The parameters the `paxline` CLI would run the leaf command with (nothing runs)."""
    cmd: Any = get_command(app)
    ctx = cmd.make_context("paxline", list(args))
    while hasattr(cmd, "resolve_command"):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return dict(ctx.params)


@pytest.mark.parametrize("base", ["-data", "--data", "_data", "data"])
def test_a_coordinator_command_keeps_a_data_dir_that_begins_with_a_dash(base: str) -> None:
    cluster = LocalCluster(Path(base), size=3)
    argv = cluster.command(2)
    assert argv[1:3] == ["-m", "paxline.cli"]
    params = parsed_params(argv[3:])
    assert Path(params["data_dir"]) == Path(base).resolve() / "node2"
    assert params["node_id"] == 2
