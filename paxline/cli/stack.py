"""`paxline up | down | status | sim`: the local stack and the simulator."""

from __future__ import annotations

import json
import subprocess

import typer

from paxline.cli.common import print_table
from paxline.settings import locate, not_found_hint, remember

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        workers: int = typer.Option(2, help="Worker processes to run."),
        local: bool = typer.Option(False, "--local", help="Force local processes."),
        compose: bool = typer.Option(False, "--compose", help="Force docker compose."),
    ) -> None:
        """Start Kafka, Redis (AOF), 3 coordinators and the workers in the background.

        Uses docker compose when a Docker engine answers, local processes otherwise.
        Local state and logs live in the stack directory: $PAXLINE_HOME, else the nearest
        .paxline above the current directory, else ~/.local/state/paxline. Other directories
        find this stack afterwards (it is recorded as your last one).
        Stop with `paxline down`. Example: paxline up --workers 3
        """
        from rich.console import Console

        from paxline.localstack import compose as compose_stack
        from paxline.localstack.stack import LocalStack

        if local and compose:
            raise typer.BadParameter("choose one of --local and --compose")
        console = Console()
        engine = compose_stack.engine_available()
        if compose or (engine and not local):
            if not engine:
                typer.echo(
                    "error: --compose needs a running Docker engine (none answers at "
                    '$DOCKER_HOST); without Docker: eval "$(scripts/container-engine start)" '
                    "(podman, README); or use --local (the default without Docker)",
                    err=True,
                )
                raise typer.Exit(2)
            compose_stack.up(workers, progress=console.print)
            return
        where = locate()
        console.print(f"stack directory: {where.path} ({where.how})")
        info = LocalStack(where.path).up(workers=workers, progress=console.print)
        remember(where.path)
        console.print(f"\n[bold]paxline is up[/bold] (state and logs in {info.home})")
        console.print(f"  kafka         {info.kafka}")
        console.print(f"  redis         {info.redis}")
        console.print(f"  coordinators  {', '.join(info.coordinators)}")
        console.print(f"  dashboard     {info.coordinators[0]}/")
        console.print(f"  workers       {', '.join(sorted(info.workers))}")
        console.print("next: paxline submit examples/wordcount.py:job --wait")

    @app.command()
    def down(
        compose: bool = typer.Option(False, "--compose", help="Stop the compose deployment."),
    ) -> None:
        """Stop everything `paxline up` started (data stays for the next `up`).

        Workers first (their goodbye reaches the coordinators, so partitions move at once),
        then coordinators, then Kafka and Redis. Example: paxline down
        """
        from rich.console import Console

        from paxline.localstack import compose as compose_stack
        from paxline.localstack.stack import LocalStack

        if compose:
            project = compose_stack.project_dir()
            subprocess.run([*compose_stack.compose_command(), "down"], cwd=project, check=False)
            return
        where = locate()
        if not where.exists:
            typer.echo(f"nothing to stop: {not_found_hint(where)}")
            return
        Console().print(f"stopping the stack in {where.path} ({where.how})")
        LocalStack(where.path).down(progress=Console().print)

    @app.command()
    def status(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
        """Which local services run, and where (exit 1 if any is down or no stack is found).

        Example: paxline status --json
        """
        from rich.table import Table

        from paxline.localstack.stack import LocalStack

        where = locate()
        rows = LocalStack(where.path).process_table() if where.exists else []
        if as_json:
            typer.echo(json.dumps(rows))
        elif not rows:
            typer.echo(not_found_hint(where), err=True)
        else:
            table = Table(title=f"paxline stack in {where.path}")
            for col in ("service", "address", "up"):
                table.add_column(col, no_wrap=col != "up")
            for r in rows:
                table.add_row(r["service"], str(r["address"]), "yes" if r["up"] else "NO")
            print_table(table)
        if not rows or not all(r["up"] for r in rows):
            raise typer.Exit(1)

    @app.command()
    def sim(
        seed: int = typer.Option(None, help="Replay one simulated schedule."),
        seeds: int = typer.Option(None, help="Run a sweep of this many seeds."),
        start: int = typer.Option(0, help="First seed of a sweep."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Print the trace."),
    ) -> None:
        """Run the deterministic Multi-Paxos simulator (faults, crashes, partitions).

        Examples: paxline sim --seeds 1000    paxline sim --seed 42 -v
        """
        from coordinator.sim.cli import replay, run_sweep

        if seed is not None:
            raise typer.Exit(replay(seed, verbose))
        raise typer.Exit(run_sweep(seeds or 100, start=start, verbose=verbose))
