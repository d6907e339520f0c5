"""`paxline up | down | status | sim`: the local stack and the simulator."""

from __future__ import annotations

import json
import subprocess

import typer
from rich.console import Console
from rich.table import Table

from paxline.settings import home

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
        Local state and logs live under $PAXLINE_HOME (default .paxline/).
        Stop with `paxline down`. Example: paxline up --workers 3
        """
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
        info = LocalStack(home()).up(workers=workers, progress=console.print)
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
        """Stop everything `paxline up` started (data stays for the next `up`)."""
        from paxline.localstack import compose as compose_stack
        from paxline.localstack.stack import LocalStack

        if compose:
            where = compose_stack.project_dir()
            subprocess.run([*compose_stack.compose_command(), "down"], cwd=where, check=False)
            return
        LocalStack(home()).down(progress=Console().print)

    @app.command()
    def status(as_json: bool = typer.Option(False, "--json", help="Machine output.")) -> None:
        """Which local services run, and where."""
        from paxline.localstack.stack import LocalStack

        rows = LocalStack(home()).process_table()
        if as_json:
            typer.echo(json.dumps(rows))
        elif not rows:
            typer.echo("no local stack here; start one with `paxline up`")
        else:
            table = Table(title=f"paxline stack in {home()}")
            for col in ("service", "address", "up"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["service"], str(r["address"]), "yes" if r["up"] else "NO")
            Console().print(table)
        if rows and not all(r["up"] for r in rows):
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
