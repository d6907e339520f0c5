"""`paxline worker run | submit | jobs | cancel | offsets`: the job life cycle."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from coordinator.client import CoordinatorClient, CoordinatorUnavailable, RequestRejected
from paxline.settings import resolve
from pipeline.errors import PipelineError

__all__ = ["register"]

_COORD = typer.Option(
    None,
    "--coordinators",
    help="Coordinator API URLs, comma-separated (env PAXLINE_COORDINATORS; default: the "
    "stack `paxline up` started).",
)
_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _client(coordinators: str | None, timeout: float = 15.0) -> CoordinatorClient:
    ep = resolve(coordinators)
    return CoordinatorClient(ep.coordinators, ep.token or None, timeout=timeout,
                             ca=ep.tls_ca or None)  # fmt: skip


def _job_action(coordinators: str | None, method: str, name: str, done: str) -> None:
    """One job mutation: a refused request exits 2 with the coordinators' message."""
    with _client(coordinators) as client:
        try:
            getattr(client, method)(name)
        except RequestRejected as exc:
            raise _fail(str(exc), 2) from exc
    typer.echo(f"{done} {name}")


def topics_of(spec: dict[str, Any]) -> dict[str, int]:
    """Every topic a job needs, with partition counts: sources (incl. repartition topics),
    the Kafka sink and the dead-letter topic (sized like the first source)."""
    topics = {s["topic"]: int(s["partitions"]) for s in spec["sources"]}
    default = int(spec["sources"][0]["partitions"])
    sink = spec.get("sink", {})
    for name in (sink.get("topic"), sink.get("dead_letter")):
        if name:
            topics.setdefault(str(name), default)
    return topics


def register(app: typer.Typer) -> None:
    worker_app = typer.Typer(help="Run a worker.", no_args_is_help=True)
    app.add_typer(worker_app, name="worker")

    @worker_app.command("run")
    def worker_run(
        worker_id: str = typer.Option("", "--id", help="Unique worker id (default: host-pid)."),
        coordinators: str = _COORD,
        kafka: str = typer.Option(None, help="Kafka bootstrap (env PAXLINE_KAFKA)."),
        redis_url: str = typer.Option(None, "--redis", help="Redis URL (env PAXLINE_REDIS)."),
        capacity: int = typer.Option(1024, help="Most partitions this worker will own."),
        batch_size: int = typer.Option(5000, help="Records per poll."),
        metrics_port: int = typer.Option(
            0, envvar="PAXLINE_METRICS_PORT", help="Serve Prometheus /metrics here (0: off)."
        ),
        tls_ca: str = typer.Option(
            None, "--tls-ca", help="CA file for HTTPS coordinators (env PAXLINE_TLS_CA)."
        ),
    ) -> None:
        """Consume the partitions the coordinators assign to this worker until SIGTERM.

        Example: paxline worker run --id worker-1
        """
        from pipeline.worker import Worker, WorkerConfig

        ep = resolve(coordinators, kafka=kafka, redis=redis_url, tls_ca=tls_ca)
        wid = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        logging.basicConfig(
            level=logging.INFO, format=f"%(asctime)s {wid} %(levelname)s %(name)s: %(message)s"
        )
        sys.path.insert(0, os.getcwd())  # job entrypoints are resolved from the deployment
        w = Worker(WorkerConfig(wid, ep.coordinators, ep.token, ep.kafka, ep.redis,
                                capacity=capacity, batch_size=batch_size,
                                metrics_port=metrics_port, tls_ca=ep.tls_ca))  # fmt: skip
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: w.stop_event.set())
        try:
            w.run()
        except PipelineError as exc:
            logging.getLogger("pipeline.worker").critical("worker %s stopped: %s", wid, exc)
            raise typer.Exit(1) from exc

    @app.command()
    def submit(
        ref: str = typer.Argument(..., help="The job: path/to/file.py:attr or module:attr."),
        coordinators: str = _COORD,
        kafka: str = typer.Option(None, help="Kafka bootstrap for creating topics."),
        wait: bool = typer.Option(False, "--wait", help="Wait until every partition is owned."),
        timeout: float = typer.Option(60.0, help="Seconds to wait with --wait."),
        as_json: bool = _JSON,
    ) -> None:
        """Validate a job, create its topics and submit it to the coordinators.

        Example: paxline submit examples/wordcount.py:job --wait
        """
        from pipeline.job import SpecError
        from pipeline.kafka import create_topics
        from pipeline.loading import JobLoadError, load_job
        from pipeline.spec import build_spec

        sys.path.insert(0, os.getcwd())
        try:
            spec = build_spec(load_job(ref), ref)
        except (JobLoadError, SpecError) as exc:
            raise _fail(str(exc), 2) from exc
        ep = resolve(coordinators, kafka=kafka)
        create_topics(ep.kafka, topics_of(spec))
        with _client(coordinators) as client:
            try:
                client.submit_job(spec)
            except RequestRejected as exc:
                raise _fail(str(exc), 2) from exc
            if wait:
                deadline = time.monotonic() + timeout
                while True:
                    parts = client.offsets(spec["name"])
                    if parts and all(p.owner for p in parts):
                        break
                    if time.monotonic() > deadline:
                        raise _fail(f"not every partition owned after {timeout:.0f}s; "
                                    "are workers running? (`paxline status`)")  # fmt: skip
                    time.sleep(0.2)
        if as_json:
            typer.echo(json.dumps(spec))
        else:
            typer.echo(f"submitted {spec['name']} ({len(spec['sources'])} source topics)")

    @app.command()
    def jobs(coordinators: str = _COORD, as_json: bool = _JSON) -> None:
        """List jobs."""
        with _client(coordinators) as client:
            rows = client.jobs()
        if as_json:
            typer.echo(json.dumps(msgspec.to_builtins(rows)))
            return
        table = Table(title="jobs")
        for col in ("name", "entrypoint", "sources", "sink", "guarantee", "paused"):
            table.add_column(col)
        for j in rows:
            s = j.spec
            sources = ", ".join(f"{x.topic}({x.partitions})" for x in s.sources)
            table.add_row(s.name, s.entrypoint, sources, json.dumps(s.sink),
                          s.guarantee, str(j.paused))  # fmt: skip
        Console().print(table)

    @app.command()
    def cancel(name: str, coordinators: str = _COORD) -> None:
        """Cancel a job (its offsets are forgotten)."""
        _job_action(coordinators, "cancel_job", name, "cancelled")

    @app.command()
    def pause(name: str, coordinators: str = _COORD) -> None:
        """Pause a job: every partition is revoked (fencing in-flight commits)."""
        _job_action(coordinators, "pause_job", name, "paused")

    @app.command()
    def resume(name: str, coordinators: str = _COORD) -> None:
        """Resume a paused job under new epochs."""
        _job_action(coordinators, "resume_job", name, "resumed")

    @app.command("reset-offsets")
    def reset_offsets(
        name: str,
        to: list[str] = typer.Option(..., "--to", help="TOPIC:PARTITION=OFFSET (repeatable)."),
        coordinators: str = _COORD,
    ) -> None:
        """Set agreed offsets of a paused job (the next offset each partition reads).

        Example: paxline pause wordcount && paxline reset-offsets wordcount --to text:0=0
        """
        offsets: dict[tuple[str, int], int] = {}
        for item in to:
            where, sep, offset = item.rpartition("=")
            topic, sep2, partition = where.rpartition(":")
            if not (sep and sep2 and topic and partition.isdigit() and offset.isdigit()):
                raise _fail(f"--to {item!r} must look like TOPIC:PARTITION=OFFSET", 2)
            offsets[(topic, int(partition))] = int(offset)
        with _client(coordinators) as client:
            try:
                client.reset_offsets(name, offsets)
            except RequestRejected as exc:
                raise _fail(str(exc), 2) from exc
        typer.echo(f"reset {len(offsets)} offsets of {name}")

    @app.command()
    def offsets(
        name: str,
        coordinators: str = _COORD,
        kafka: str = typer.Option(None, help="Kafka bootstrap (for end offsets and lag)."),
        as_json: bool = _JSON,
    ) -> None:
        """Per partition: agreed offset, Kafka end offset, lag, owner and epoch.

        For exactly-once jobs also Kafka's commit point (offsets committed inside the job's
        transactions) and whether the agreed offset trails it (it catches up at the next
        checkpoint or takeover). Example: paxline offsets wordcount --json
        """
        from pipeline.kafka import committed_offsets, end_offsets

        ep = resolve(coordinators, kafka=kafka)
        try:
            with _client(coordinators) as client:
                parts = [msgspec.to_builtins(p) for p in client.offsets(name)]
                guarantee = client.job(name).spec.guarantee
        except RequestRejected as exc:
            raise _fail(str(exc), 2) from exc
        except CoordinatorUnavailable as exc:
            raise _fail(str(exc)) from exc
        tps = [(p["topic"], p["partition"]) for p in parts]
        ends = end_offsets(ep.kafka, tps)
        eos = guarantee == "exactly-once"
        kafka_commit = committed_offsets(ep.kafka, f"paxline.{name}", tps) if eos else {}
        for p in parts:
            tp = (p["topic"], p["partition"])
            p["end_offset"] = ends[tp]
            p["lag"] = ends[tp] - (p["offset"] or 0)
            if eos:
                k = kafka_commit.get(tp)
                p["kafka_committed"] = k
                p["trails_kafka"] = k is not None and (p["offset"] or 0) < k
        if as_json:
            typer.echo(json.dumps(parts))
            return
        table = Table(title=f"offsets of {name} ({guarantee})")
        cols = ["topic", "partition", "agreed", "end", "lag", "owner", "epoch"]
        if eos:
            cols += ["kafka commit", "trails"]
        for col in cols:
            table.add_column(col, justify="left" if col in ("topic", "owner") else "right")
        for p in parts:
            row = [p["topic"], str(p["partition"]), str(p["offset"]), str(p["end_offset"]),
                   str(p["lag"]), str(p["owner"] or "-"), str(p["epoch"])]  # fmt: skip
            if eos:
                row += [str(p["kafka_committed"]), "yes" if p["trails_kafka"] else "no"]
            table.add_row(*row)
        Console().print(table)
        if eos:
            typer.echo(
                "lag counts transaction markers too: a caught-up exactly-once partition may "
                "show a small lag"
            )
