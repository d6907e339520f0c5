"""`paxline up | down | status | sim`: the local stack and the simulator."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import typer

from paxline.cli.common import TIMEOUT, budget, coordinator_client, fail, print_table
from paxline.cli.stalls import PartitionStall, by_worker, collect
from paxline.localstack.common import ServiceError
from paxline.settings import locate, not_found_hint, remember, resolve

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        workers: int = typer.Option(2, help="Worker processes to run."),
        brokers: int = typer.Option(
            1, help="Kafka brokers: 1, or a KRaft cluster (3: replication 3, min ISR 2)."
        ),
        redis: str = typer.Option(
            "single",
            help="Redis: single, sentinel (primary, replica, 3 sentinels, WAIT 1) "
            "or cluster (3 primaries + 3 replicas).",
        ),
        local: bool = typer.Option(False, "--local", help="Force local processes."),
        compose: bool = typer.Option(False, "--compose", help="Force docker compose."),
    ) -> None:
        """Start Kafka, Redis (AOF), 3 coordinators and the workers in the background.

        Uses docker compose when a Docker engine answers, local processes otherwise. Local
        processes run under the stack's supervisor, which restarts whatever exits (with a
        back-off from 1 s to 30 s for a process that keeps failing); `paxline status` shows
        restarts and how each process last ended. Local state and logs live in the stack
        directory: $PAXLINE_HOME, else the nearest .paxline above the current directory,
        else ~/.local/state/paxline. Other directories find this stack afterwards (it is
        recorded as your last one). Running `up` again on a running stack changes only the
        number of workers. Stop with `paxline down`.
        Examples: paxline up --workers 3    paxline up --brokers 3    paxline up --redis cluster
        """
        from rich.console import Console

        from paxline.localstack import compose as compose_stack
        from paxline.localstack.stack import LocalStack, StackConfigError, StackOptions

        if local and compose:
            fail("choose one of --local and --compose", 2)
        options = StackOptions(workers=workers, brokers=brokers, redis=redis)
        for problem in options.problems():
            fail(problem, 2)
        console = Console()
        engine = compose_stack.engine_available()
        if compose or (engine and not local):
            if not engine:
                fail(
                    "--compose needs a running Docker engine (none answers at "
                    '$DOCKER_HOST); without Docker: eval "$(scripts/container-engine start)" '
                    "(podman, README); or use --local (the default without Docker)",
                    2,
                )
            if options.brokers != 1:
                fail("--brokers is for the local stack (the compose file runs 1 broker); "
                     "add --local", 2)  # fmt: skip
            if options.redis != "single":
                fail("--redis is for the local stack (the compose file runs 1 Redis); "
                     "add --local", 2)  # fmt: skip
            compose_stack.up(workers, progress=console.print)
            return
        where = locate()
        console.print(f"stack directory: {where.path} ({where.how})")
        try:
            info = LocalStack(where.path).up(options, progress=console.print)
        except StackConfigError as exc:
            fail(str(exc), 2)
        except ServiceError as exc:
            fail(f"{exc} (the stack was stopped again)")
        remember(where.path)
        console.print(f"\n[bold]paxline is up[/bold] (state and logs in {info.home})")
        console.print(f"  kafka         {info.kafka}")
        console.print(f"  redis         {info.redis}")
        console.print(f"  coordinators  {', '.join(info.coordinators)}")
        console.print(f"  dashboard     {info.coordinators[0]}/")
        console.print(f"  workers       {', '.join(sorted(info.workers)) or '-'}")
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
    def status(
        as_json: bool = typer.Option(False, "--json", help="Machine output."),
        timeout: float = TIMEOUT,
    ) -> None:
        """Every process of the local stack: up or not, restarts, how it last ended
        ("killed by SIGKILL at 12:03:04"), and stalled partitions per worker ("stalled: Redis
        unreachable since 12:03:04"). Exit 1 if a process is down or no stack is found.

        Example: paxline status --json
        """
        from rich.table import Table

        from paxline.localstack.stack import LocalStack

        budget(timeout)
        where = locate()
        rows = LocalStack(where.path).process_table() if where.exists else []
        stalls, note = _stalls(rows) if rows else ([], "")
        per_worker = by_worker(stalls)
        for r in rows:
            if r["service"].startswith("worker-"):
                r["stalled"] = per_worker.get(r["service"])
                r["stalls"] = [
                    {"job": x.job, "topic": x.topic, "partition": x.partition,
                     "reason": x.reason, "since": x.since, "text": x.text}
                    for x in stalls if x.worker == r["service"]
                ]  # fmt: skip
        if as_json:
            typer.echo(json.dumps(rows))
        elif not rows:
            typer.echo(not_found_hint(where), err=True)
        else:
            supervised = "restarts" in rows[0]
            cols = ["service", "address", "up"]
            cols += ["restarts", "last exit", "now"] if supervised else []
            table = Table(title=f"paxline stack in {where.path}")
            for col in cols:
                table.add_column(col)
            for r in rows:
                cells = [r["service"], str(r["address"]), "yes" if r["up"] else "NO"]
                if supervised:
                    now = r.get("stalled") or r.get("state", "")
                    cells += [str(r.get("restarts", 0)), r.get("last_exit") or "-", now]
                table.add_row(*cells)
            print_table(table)
            for x in stalls:
                typer.echo(f"{x.job} {x.topic}[{x.partition}] on {x.worker or 'nobody'}: "
                           f"{x.text}")  # fmt: skip
            if note:
                typer.echo(note)
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


def _stalls(rows: list[dict[str, Any]]) -> tuple[list[PartitionStall], str]:
    """Stalled partitions from the coordinators, within the command's budget; when they do
    not answer, none and a note saying so (the table already shows which process is down)."""
    from coordinator.client import CoordinatorUnavailable, RequestRejected

    if not any(r["up"] for r in rows if r["service"].startswith("coordinator")):
        return [], "stalls: unknown (no coordinator runs)"
    ep = resolve(None)
    try:
        with coordinator_client(ep) as client:
            return collect(client), ""
    except (CoordinatorUnavailable, RequestRejected) as exc:
        return [], f"stalls: unknown (coordinators: {type(exc).__name__})"
