"""The `paxline` command.

Sub-commands are grouped by concern and added as the runtime grows; each keeps its own
imports local so that `paxline --help` stays fast and works without Kafka or Redis running.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="paxline",
    help="Stream processing for Python with Multi-Paxos-agreed ownership and checkpoints.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Stream processing for Python with Multi-Paxos-agreed ownership and checkpoints."""


@app.command()
def version() -> None:
    """Print the paxline version."""
    try:
        typer.echo(dist_version("paxline"))
    except PackageNotFoundError:
        typer.echo("unknown (not installed)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
