"""The `paxline` command.

Sub-commands are grouped by concern and added as the runtime grows; each keeps its own
imports local so that `paxline --help` stays fast and works without Kafka or Redis running.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path

import typer

from paxline.cli.common import DEBUG, TIMEOUT, budget, fail, print_table, remaining, run_guarded
from paxline.cli.common import timeout as common_timeout

__all__ = ["app", "main"]

app = typer.Typer(
    name="paxline",
    help="Stream processing for Python with Multi-Paxos-agreed ownership and checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(timeout: float = TIMEOUT, debug: bool = DEBUG) -> None:
    """Stream processing for Python with Multi-Paxos-agreed ownership and checkpoints.

    Commands find their stack in $PAXLINE_HOME, else the nearest .paxline directory above
    the current one, else the stack you last started with `paxline up`.
    """
    budget(timeout, debug)


@app.command()
def version() -> None:
    """Print the paxline version.

    Example: paxline version
    """
    try:
        typer.echo(dist_version("paxline"))
    except PackageNotFoundError:
        typer.echo("unknown (not installed)")


coordinator_app = typer.Typer(help="Run a coordinator node.", no_args_is_help=True)
cluster_app = typer.Typer(help="Inspect the coordinator cluster.", no_args_is_help=True)
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(cluster_app, name="cluster")

_ENDPOINTS = typer.Option(
    None,
    "--coordinators",
    help="Coordinator API URLs, comma-separated (env PAXLINE_COORDINATORS; default: the stack's).",
)
_TLS_CA = typer.Option(
    "",
    "--tls-ca",
    envvar="PAXLINE_TLS_CA",
    help="CA file to verify HTTPS coordinators with (default: the system's trust store).",
)


@coordinator_app.command("run")
def coordinator_run(
    node_id: int = typer.Option(..., "--id", help="This node's id (one of --peers)."),
    peers: str = typer.Option(..., help="All nodes: 1=host:port,2=host:port,3=host:port"),
    api: str = typer.Option("0.0.0.0:8701", help="HOST:PORT for the HTTP API."),
    data_dir: Path = typer.Option(..., help="Directory for the durable log and snapshots."),
    no_fsync: bool = typer.Option(
        False, "--no-fsync", help="Skip fsync (unsafe; benchmarks only)."
    ),
    initial_cluster: str = typer.Option(
        "existing", help="'new' lets an empty data dir bootstrap a new cluster with its peers."
    ),
    join: bool = typer.Option(
        False, "--join", help="An empty data dir replaces this node's lost disk: learn, then vote."
    ),
    tls_cert: str = typer.Option(
        "", envvar="PAXLINE_TLS_CERT", help="This node's certificate (PEM): enables TLS."
    ),
    tls_key: str = typer.Option("", envvar="PAXLINE_TLS_KEY", help="Its private key (PEM)."),
    tls_ca: str = typer.Option(
        "", envvar="PAXLINE_TLS_CA", help="The CA (PEM) that signed every node's certificate."
    ),
) -> None:
    """Run one coordinator node until SIGTERM.

    Needs PAXLINE_CLUSTER_SECRET (same on every node) and PAXLINE_API_TOKEN. With
    --tls-cert, --tls-key and --tls-ca (all three) the API serves HTTPS and the peer links
    run mutual TLS, with the HMAC still on every frame.

    Example:

        paxline coordinator run --id 1 --api 127.0.0.1:8701 --data-dir var/c1 \\
            --peers 1=127.0.0.1:9701,2=127.0.0.1:9702,3=127.0.0.1:9703
    """
    from coordinator.server.main import ConfigError, config_from_env, run

    try:
        cfg = config_from_env(node_id, peers, api, data_dir, not no_fsync, initial_cluster, join,
                              tls_cert, tls_key, tls_ca)  # fmt: skip
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run(cfg)


@cluster_app.command("status")
def cluster_status(
    coordinators: str | None = _ENDPOINTS,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    tls_ca: str = _TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """A table of nodes: role, ballot, commit index, applied index, lag.

    Asks each node for its own view (nothing is forwarded), so it works without a leader.
    Exit 1 when no node is the leader. Example: paxline cluster status --json
    """
    import json
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from coordinator.client import CoordinatorClient
    from paxline.settings import resolve

    budget(timeout)
    ep = resolve(coordinators)
    endpoints = ep.coordinators
    if not endpoints:
        fail("--coordinators names no endpoint", 2)
    left = remaining()

    def ask(client: CoordinatorClient, endpoint: str) -> dict[str, object]:
        try:
            return {"endpoint": endpoint, **client.node_status(endpoint, timeout=left)}
        except Exception as exc:  # any failure of one node is that node's row
            return {"endpoint": endpoint, "role": "unreachable", "error": type(exc).__name__}

    with (
        CoordinatorClient(endpoints, request_timeout=left, ca=tls_ca or None) as client,
        ThreadPoolExecutor(len(endpoints)) as pool,
    ):
        rows = list(pool.map(lambda e: ask(client, e), endpoints))
    if all(r.get("role") == "unreachable" for r in rows):
        fail(
            f"coordinators at {', '.join(endpoints)} did not answer within "
            f"{common_timeout():.1f}s; "
            f"addresses from {ep.origin}"
        )
    top = max((int(str(r.get("commit_index", 0))) for r in rows if "commit_index" in r), default=0)
    for r in rows:
        if "applied_index" in r:
            r["lag"] = top - int(str(r["applied_index"]))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="paxline coordinators")
        for col in ("endpoint", "node", "role", "ballot", "commit", "applied", "lag"):
            table.add_column(col, no_wrap=col == "endpoint")
        for r in rows:
            table.add_row(
                str(r["endpoint"]), str(r.get("node_id", "-")), str(r.get("role", "-")),
                str(r.get("ballot") or r.get("promised") or "-"), str(r.get("commit_index", "-")),
                str(r.get("applied_index", "-")), str(r.get("lag", "-")),
            )  # fmt: skip
        print_table(table)
    if not any(r.get("role") == "leader" for r in rows):
        fail("no leader among the reachable nodes")


def _register() -> None:
    from paxline.cli import jobs as cli_jobs
    from paxline.cli import stack as cli_stack

    cli_jobs.register(app)
    cli_stack.register(app)
    from paxline.cli import cluster as cli_cluster  # issue 17: membership changes

    cli_cluster.register(cluster_app)


_register()


def main() -> None:
    run_guarded(app)


if __name__ == "__main__":
    main()
