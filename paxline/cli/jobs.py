"""`paxline worker run | submit | jobs | cancel | pause | resume | reset-offsets | offsets`:
the job life cycle.

Coordinator and Kafka clients are imported inside the commands, so `paxline --help` and
commands that fail early do not pay for them (start-up counts against `--timeout`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import typer

from paxline.cli.common import (
    TIMEOUT,
    budget,
    coordinator_client,
    fail,
    print_table,
    reaching,
    remaining,
)
from paxline.settings import resolve

if TYPE_CHECKING:
    from coordinator.client import CoordinatorClient, RequestRejected

__all__ = ["register", "topics_of"]

_COORD = typer.Option(
    None,
    "--coordinators",
    help="Coordinator API URLs, comma-separated (env PAXLINE_COORDINATORS; default: the stack's).",
)
_JSON = typer.Option(False, "--json", help="Machine-readable output.")
# Once a service has answered, a slow operation (creating topics, a Paxos round on a loaded
# machine) gets this long: the short budget is for services that do not answer at all.
_ANSWERING = 30.0


def _answered(client: CoordinatorClient) -> CoordinatorClient:
    client.timeout = _ANSWERING
    return client


def rejection(exc: RequestRejected, name: str = "") -> str:
    """The coordinators' refusal in CLI terms: the command to run next, not an HTTP route."""
    job = name or str(exc.body.get("name", ""))
    match exc.result:
        case "JobNotPaused":
            return f"job {job!r} is running: pause it first with `paxline pause {job}`"
        case "JobExists":
            return (
                f"job {job!r} already exists: cancel it with `paxline cancel {job}` or submit "
                "under another name"
            )
        case "UnknownJob":
            return f"unknown job {job!r} (`paxline jobs` lists them)"
    if exc.status == 401:
        return "the coordinators refused the API token (set PAXLINE_API_TOKEN or PAXLINE_HOME)"
    return str(exc.body.get("error") or exc)


def _job_action(coordinators: str | None, method: str, name: str, done: str) -> None:
    """One job mutation: a refused request exits 2 with the coordinators' reason."""
    from coordinator.client import RequestRejected

    ep = resolve(coordinators)
    with reaching(ep), coordinator_client(ep) as client:
        try:
            getattr(client, method)(name)
        except RequestRejected as exc:
            fail(rejection(exc, name), 2)
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


def _internal(spec: dict[str, Any], topic: str) -> bool:
    """Topics paxline names after the job (repartition, default dead letters)."""
    return topic.startswith(f"paxline.{spec['name']}.")


def partition_problems(spec: dict[str, Any], existing: dict[str, int]) -> list[str]:
    """Why existing topics cannot serve this job: each with what to change."""
    problems = []
    for topic, want in topics_of(spec).items():
        have = existing.get(topic)
        if have is None or have == want:
            continue
        if _internal(spec, topic):
            problems.append(
                f"topic {topic!r} (internal to job {spec['name']!r}) exists with {have} "
                f"partitions, the job needs {want}: delete it (a previous job of that name "
                "left it) or rename the job"
            )
        else:
            problems.append(
                f"topic {topic!r} exists with {have} partitions but the job declares {want}: "
                f"declare partitions={have} or use another topic"
            )
    return problems


def _rabbitmq_source(settings: Any) -> str:
    """ "rabbitmq stream|queue NAME on HOST:PORT" for a RabbitMQ source (issue 19), else ""."""
    stages = settings.get("stages") if isinstance(settings, dict) else None
    src = stages[0].get("source") if isinstance(stages, list) and stages else None
    if isinstance(src, dict) and src.get("kind") == "rabbitmq-stream":
        return f"rabbitmq stream {src.get('stream')} on {src.get('server')}"
    if isinstance(src, dict) and src.get("kind") == "rabbitmq-queue":
        return f"rabbitmq queue {src.get('queue')} on {src.get('server')}"
    return ""


def _submit_summary(spec: dict[str, Any], created: list[str]) -> str:
    first = spec["sources"][0]
    internal = [s["topic"] for s in spec["sources"][1:]]
    line = f"submitted {spec['name']}: reads {first['topic']} ({first['partitions']} partitions)"
    origin = _rabbitmq_source(spec.get("settings"))
    if origin:
        line = (f"submitted {spec['name']}: reads {origin} ({first['partitions']} partitions; "
                f"offsets kept under {first['topic']})")  # fmt: skip
    if internal:
        line += f", repartitions through {', '.join(internal)}"
    line += f"; created topics: {', '.join(created) if created else 'none (all existed)'}"
    return line


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

        A worker waits for coordinators and Kafka that are down (it logs one warning per
        failed heartbeat and resumes when they answer). Example: paxline worker run --id w1
        """
        from pipeline.errors import PipelineError
        from pipeline.state.url import RedisUrlError, parse_redis_url
        from pipeline.worker import Worker, WorkerConfig

        ep = resolve(coordinators, kafka=kafka, redis=redis_url, tls_ca=tls_ca)
        try:
            parse_redis_url(ep.redis)
        except RedisUrlError as exc:
            fail(str(exc), 2)
        wid = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        configure_worker_logging(wid)
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
        wait_timeout: float = typer.Option(60.0, help="Seconds to wait with --wait."),
        as_json: bool = _JSON,
        timeout: float = TIMEOUT,
    ) -> None:
        """Validate a job, create its topics and submit it to the coordinators.

        Everything is checked before anything is created: the job itself, that no job of
        that name exists, and that topics which exist already have the partition counts the
        job needs. If the coordinators then refuse the job, the topics this command created
        are deleted again. Example: paxline submit examples/wordcount.py:job --wait
        """
        import msgspec

        from coordinator.client import CoordinatorUnavailable, RequestRejected
        from coordinator.metadata import validate_spec
        from coordinator.protocol import JobSpec
        from pipeline.errors import PipelineError
        from pipeline.job import SpecError
        from pipeline.loading import JobLoadError, load_job
        from pipeline.spec import build_spec

        budget(timeout)
        sys.path.insert(0, os.getcwd())
        try:
            spec = build_spec(load_job(ref), ref)
            problem = validate_spec(msgspec.convert(spec, JobSpec))
        except (JobLoadError, SpecError, msgspec.ValidationError) as exc:
            fail(str(exc), 2)
        if problem:
            fail(problem, 2)
        if spec["sink"].get("kind") == "files":  # s3:// without s3fs: refused here, not
            from pipeline.files.support import url_problem  # a stall on every worker

            lacking = url_problem(spec["sink"]["url"])
            if lacking:
                fail(f"to_files: {lacking}", 2)
        ep = resolve(coordinators, kafka=kafka)
        name = spec["name"]
        needed = topics_of(spec)
        with reaching(ep), coordinator_client(ep) as client:
            if any(j.spec.name == name for j in client.jobs()):
                fail(rejection(RequestRejected(409, {"result": "JobExists"}), name), 2)
            _answered(client)
            from pipeline.kafka import create_topics, delete_topics, topic_partitions

            existing = topic_partitions(ep.kafka, needed, timeout=remaining())
            problems = partition_problems(spec, existing)
            if problems:
                fail("; ".join(problems), 2)
            missing = {t: n for t, n in needed.items() if t not in existing}
            try:
                create_topics(ep.kafka, missing, timeout=_ANSWERING)
                client.submit_job(spec)
            except (PipelineError, RequestRejected) as exc:
                left = delete_topics(ep.kafka, missing)
                undo = f" (could not delete {'; '.join(left)})" if left else ""
                if isinstance(exc, RequestRejected):
                    fail(rejection(exc, name) + undo, 2)
                fail(f"{exc}; created topics deleted again{undo}")
            except CoordinatorUnavailable as exc:
                fail(f"the coordinators stopped answering while submitting {name}; it may or "
                     f"may not exist (check `paxline jobs`); topics created: "
                     f"{', '.join(missing) or 'none'} ({exc})")  # fmt: skip
            if wait:
                deadline = time.monotonic() + wait_timeout
                while True:
                    parts = client.offsets(name)
                    if parts and all(p.owner for p in parts):
                        break
                    if time.monotonic() > deadline:
                        fail(f"not every partition owned after {wait_timeout:.0f}s; "
                             "are workers running? (`paxline status`)")  # fmt: skip
                    time.sleep(0.2)  # polling the coordinators, not synchronisation
        if as_json:
            typer.echo(json.dumps({**spec, "created_topics": sorted(missing)}))
        else:
            typer.echo(_submit_summary(spec, sorted(missing)))

    @app.command()
    def jobs(coordinators: str = _COORD, as_json: bool = _JSON, timeout: float = TIMEOUT) -> None:
        """List jobs: entrypoint, topics read, sink, guarantee, paused.

        Example: paxline jobs --json
        """
        import msgspec
        from rich.table import Table

        budget(timeout)
        ep = resolve(coordinators)
        with reaching(ep), coordinator_client(ep) as client:
            rows = client.jobs()
        if as_json:
            typer.echo(json.dumps(msgspec.to_builtins(rows)))
            return
        table = Table(title="jobs")
        for col in ("name", "entrypoint", "reads", "sink", "guarantee", "paused"):
            table.add_column(col, no_wrap=col in ("name", "entrypoint", "reads"))
        for j in rows:
            s = j.spec
            reads = "\n".join(f"{x.topic} ({x.partitions})" for x in s.sources)
            origin = _rabbitmq_source(s.settings)
            if origin:  # issue 19: what stage 0 really reads
                reads = f"{origin}\n{reads}"
            sink = s.sink.get("topic") or s.sink.get("view") or s.sink.get("queue") or "-"
            guarantee: str = s.guarantee
            if s.settings.get("changelog", True) is False:  # issue 16: Job(changelog=False)
                guarantee += "\n(no changelog)"
            table.add_row(s.name, s.entrypoint, reads, f"{s.sink.get('kind', '?')}: {sink}",
                          guarantee, "yes" if j.paused else "no")  # fmt: skip
        print_table(table)
        if not rows:
            typer.echo("no jobs; submit one with `paxline submit examples/wordcount.py:job`")

    @app.command()
    def cancel(name: str, coordinators: str = _COORD, timeout: float = TIMEOUT) -> None:
        """Cancel a job (its agreed offsets are forgotten; its topics stay).

        Example: paxline cancel wordcount
        """
        budget(timeout)
        _job_action(coordinators, "cancel_job", name, "cancelled")

    @app.command()
    def pause(name: str, coordinators: str = _COORD, timeout: float = TIMEOUT) -> None:
        """Pause a job: every partition is revoked (fencing in-flight commits).

        Example: paxline pause wordcount
        """
        budget(timeout)
        _job_action(coordinators, "pause_job", name, "paused")

    @app.command()
    def resume(name: str, coordinators: str = _COORD, timeout: float = TIMEOUT) -> None:
        """Resume a paused job under new epochs.

        Example: paxline resume wordcount
        """
        budget(timeout)
        _job_action(coordinators, "resume_job", name, "resumed")

    @app.command("reset-offsets")
    def reset_offsets(
        name: str,
        to: list[str] = typer.Option(..., "--to", help="TOPIC:PARTITION=OFFSET (repeatable)."),
        coordinators: str = _COORD,
        timeout: float = TIMEOUT,
    ) -> None:
        """Set agreed offsets of a paused job (the next offset each partition reads).

        Example: paxline pause wordcount && paxline reset-offsets wordcount --to text:0=0
        """
        from coordinator.client import RequestRejected

        budget(timeout)
        offsets: dict[tuple[str, int], int] = {}
        for item in to:
            where, sep, offset = item.rpartition("=")
            topic, sep2, partition = where.rpartition(":")
            if not (sep and sep2 and topic and partition.isdigit() and offset.isdigit()):
                fail(f"--to {item!r} must look like TOPIC:PARTITION=OFFSET", 2)
            offsets[(topic, int(partition))] = int(offset)
        ep = resolve(coordinators)
        with reaching(ep), coordinator_client(ep) as client:
            try:
                client.reset_offsets(name, offsets)
            except RequestRejected as exc:
                fail(rejection(exc, name), 2)
        typer.echo(f"reset {len(offsets)} offsets of {name}; continue: `paxline resume {name}`")

    @app.command()
    def offsets(
        name: str,
        coordinators: str = _COORD,
        kafka: str = typer.Option(None, help="Kafka bootstrap (for end offsets and lag)."),
        as_json: bool = _JSON,
        timeout: float = TIMEOUT,
    ) -> None:
        """Per partition: agreed offset, Kafka end offset, lag, owner and epoch.

        lag = records the job has still to read after its agreed offset; transaction
        markers are not records, so a caught-up partition shows lag 0 under every
        guarantee (`caught_up` in --json). For exactly-once jobs also Kafka's commit point
        (offsets committed inside the job's transactions) and whether the agreed offset
        trails it (it catches up at the next checkpoint or takeover).
        Example: paxline offsets wordcount --json
        """
        import msgspec
        from rich.table import Table

        from coordinator.client import RequestRejected

        budget(timeout)
        ep = resolve(coordinators, kafka=kafka)
        with reaching(ep):
            with coordinator_client(ep) as client:
                try:
                    guarantee = client.job(name).spec.guarantee
                    parts = [msgspec.to_builtins(p) for p in _answered(client).offsets(name)]
                except RequestRejected as exc:
                    fail(rejection(exc, name), 2)
            # Imported once the coordinators answered: librdkafka costs start-up time.
            from pipeline.kafka import committed_lag, committed_offsets, end_offsets

            tps = [(p["topic"], p["partition"]) for p in parts]
            ends = end_offsets(ep.kafka, tps, timeout=remaining())
            eos = guarantee == "exactly-once"
            starts = {(p["topic"], p["partition"]): p["offset"] for p in parts}
            lags = committed_lag(ep.kafka, starts, ends, read_committed=eos, timeout=_lag_time())
            kafka_commit = committed_offsets(ep.kafka, f"paxline.{name}", tps) if eos else {}
        for p in parts:
            tp = (p["topic"], p["partition"])
            p["end_offset"] = ends[tp]
            p["lag"] = lags[tp]
            p["caught_up"] = lags[tp] == 0
            if eos:
                k = kafka_commit.get(tp)
                p["kafka_committed"] = k
                p["trails_kafka"] = k is not None and (p["offset"] or 0) < k
        if as_json:
            typer.echo(json.dumps(parts))
            return
        table = Table(title=f"offsets of {name} ({guarantee})")
        cols = ["topic", "part", "agreed", "end", "lag", "owner", "epoch"]
        if eos:
            cols += ["kafka commit", "trails"]
        for col in cols:
            table.add_column(col, justify="left" if col in ("topic", "owner") else "right",
                             no_wrap=col in ("topic", "owner"))  # fmt: skip
        for p in parts:
            row = [p["topic"], str(p["partition"]), str(p["offset"]), str(p["end_offset"]),
                   str(p["lag"]), str(p["owner"] or "-"), str(p["epoch"])]  # fmt: skip
            if eos:
                row += [str(p["kafka_committed"]), "yes" if p["trails_kafka"] else "no"]
            table.add_row(*row)
        print_table(table)


def _lag_time() -> float:
    """Counting records near the end is a read, not a probe: Kafka has answered already."""
    return max(remaining(), 2.0)


def configure_worker_logging(worker_id: str) -> None:
    """INFO for what a worker decides (partitions taken, released, fenced), WARNING for the
    HTTP client: it would log every heartbeat, drowning the decisions (issue 14, item 6)."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {worker_id} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
