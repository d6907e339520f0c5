"""The HTTP API every coordinator serves (DESIGN.md sec. 4).

Followers forward requests to the leader, so a client may talk to any node. Mutations need
the bearer token; every mutation is one Paxos command, so it is applied entirely or not at
all, and a request that fails validation is refused before anything is proposed.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from coordinator.commands import (
    CancelJob,
    CommitCheckpoint,
    DeregisterWorker,
    ExpireWorker,
    Fenced,
    InvalidCommand,
    JobExists,
    JobNotPaused,
    JobSubmitted,
    OffsetRegression,
    PauseJob,
    RegisterWorker,
    ResetOffsets,
    Result,
    ResumeJob,
    SubmitJob,
    UnknownJob,
    UnknownPartition,
    UnknownTopic,
    UnknownWorker,
    WorkerDeregistered,
    WorkerRegistered,
    decode_result,
    encode_command,
)
from coordinator.metadata import validate_spec
from coordinator.protocol import JobSpec
from coordinator.server.dashboard import index_html, static_dir
from coordinator.server.metadata_app import encode_query
from coordinator.server.metrics import render_metrics
from coordinator.server.openapi import openapi_document
from coordinator.server.runtime import NodeRuntime
from coordinator.server.sessions import WorkerSessions

__all__ = ["build_app"]

Handler = Callable[[Request], Awaitable[Response]]
_T = TypeVar("_T")
_json = msgspec.json.Encoder()
FORWARDED = "x-paxline-forwarded"

# HTTP status for each typed result of the metadata machine.
_STATUS: dict[type[Any], int] = {
    JobSubmitted: 201,
    JobExists: 409,
    UnknownJob: 404,
    UnknownWorker: 404,
    UnknownTopic: 404,
    UnknownPartition: 404,
    JobNotPaused: 409,
    Fenced: 409,
    OffsetRegression: 409,
    InvalidCommand: 400,
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status)


def _result_response(result: Result) -> Response:
    body = msgspec.to_builtins(result)
    body["result"] = type(result).__name__
    status = _STATUS.get(type(result), 200)
    if status >= 400:
        body["error"] = _describe(result)
    return JSONResponse(body, status_code=status)


def _describe(result: Result) -> str:
    match result:
        case Fenced():
            return (
                f"fenced: {result.worker_id} at epoch {result.epoch} does not own "
                f"{result.topic}[{result.partition}] (owner {result.owner}, epoch "
                f"{result.current_epoch})"
            )
        case OffsetRegression():
            return (
                f"offset of {result.topic}[{result.partition}] would go backwards: "
                f"{result.current} -> {result.proposed}"
            )
        case InvalidCommand():
            return result.reason
        case JobExists():
            return f"job {result.name!r} already exists"
        case UnknownJob():
            return f"unknown job {result.name!r}"
        case UnknownWorker():
            return f"unknown worker {result.worker_id!r}"
        case UnknownTopic():
            return f"job {result.job!r} has no source topic {result.topic!r}"
        case UnknownPartition():
            return f"{result.topic}[{result.partition}] does not exist in job {result.job!r}"
        case JobNotPaused():
            return f"job {result.name!r} must be paused first (POST /v1/jobs/{result.name}/pause)"
        case _:
            fields = ", ".join(f"{k}={v!r}" for k, v in msgspec.structs.asdict(result).items())
            return f"{type(result).__name__}({fields})"


class _OffsetEntry(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    partition: int
    offset: int


class _CheckpointBody(msgspec.Struct, forbid_unknown_fields=True):
    worker_id: str
    epoch: int
    offsets: list[_OffsetEntry]


class _ResetBody(msgspec.Struct, forbid_unknown_fields=True):
    offsets: list[_OffsetEntry]


class _Progress(msgspec.Struct, forbid_unknown_fields=True):
    """A worker's view of one owned partition: next offset it will process, Kafka's end."""

    job: str
    topic: str
    partition: int
    position: int | None
    end: int


class _HeartbeatBody(msgspec.Struct, forbid_unknown_fields=True):
    capacity: int = 1024
    progress: list[_Progress] = msgspec.field(default_factory=list)


_PROGRESS_TTL = 30.0


def _decode_body(request_body: bytes, tp: type[_T]) -> _T:
    if not request_body.strip():
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        return msgspec.json.decode(request_body, type=tp)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("at `", 1)[-1].rstrip("`") if "at `" in text else None
        raise ApiError(400, f"invalid request body: {text}", field) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc


def _offsets(entries: list[_OffsetEntry], path: str) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for i, e in enumerate(entries):
        if e.partition < 0:
            raise ApiError(400, "partition must be >= 0", f"$.{path}[{i}].partition")
        if e.offset < 0:
            raise ApiError(400, "offset must be >= 0", f"$.{path}[{i}].offset")
        if (e.topic, e.partition) in out:
            raise ApiError(400, "partition listed twice", f"$.{path}[{i}]")
        out[(e.topic, e.partition)] = e.offset
    if not out:
        raise ApiError(400, "offsets must not be empty", f"$.{path}")
    return out


def build_app(rt: NodeRuntime) -> Starlette:
    token = rt.cfg.api_token.encode()
    sessions = WorkerSessions(rt.cfg.worker_session_timeout)
    # (job, topic, partition) -> (end offset, worker position, worker, when): reported by
    # workers in heartbeats so the dashboard can chart lag without talking to Kafka.
    progress: dict[tuple[str, str, int], tuple[int, int | None, str, float]] = {}
    rt.on_leadership.append(lambda: sessions.grant_grace(time.monotonic()))
    forward_client = httpx.AsyncClient(timeout=10.0)

    def session_of(request: Request) -> tuple[str | None, int | None]:
        cid = request.headers.get("paxline-client-id")
        seq_s = request.headers.get("paxline-seq")
        if cid is None and seq_s is None:
            return None, None
        if not cid or len(cid) > 128:
            raise ApiError(400, "Paxline-Client-Id must be 1..128 characters", "Paxline-Client-Id")
        try:
            seq = int(seq_s or "")
        except ValueError:
            raise ApiError(400, "Paxline-Seq must be a positive integer", "Paxline-Seq") from None
        if seq < 1:
            raise ApiError(400, "Paxline-Seq must be a positive integer", "Paxline-Seq")
        return cid, seq

    async def propose(request: Request, command: Any) -> Result:
        cid, seq = session_of(request)
        res = await rt.propose(encode_command(command), cid, seq)
        if not res.ok:
            if res.error == "stale_seq":
                raise ApiError(409, "Paxline-Seq is older than this client's latest command")
            raise ApiError(503, f"not committed ({res.error}); retry", None)
        return decode_result(res.result)

    async def read(op: str, name: str = "") -> Any:
        res = await rt.read(encode_query(op, name))
        if not res.ok:
            raise ApiError(503, f"read not served ({res.error}); retry")
        return msgspec.json.decode(res.value)

    async def forward(request: Request) -> Response:
        url = rt.leader_url()
        if url is None or request.headers.get(FORWARDED):
            return _error(503, "no leader is known yet; retry shortly", retry=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        headers[FORWARDED] = str(rt.cfg.node_id)
        try:
            resp = await forward_client.request(
                request.method,
                url + request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return _error(503, f"leader at {url} unreachable ({type(exc).__name__}); retry")
        return Response(resp.content, resp.status_code, media_type=resp.headers.get("content-type"))

    def endpoint(mutation: bool) -> Callable[[Handler], Handler]:
        def wrap(fn: Handler) -> Handler:
            async def handler(request: Request) -> Response:
                if mutation:
                    auth = request.headers.get("authorization", "")
                    given = auth[7:].encode() if auth.startswith("Bearer ") else b""
                    if not hmac.compare_digest(given, token):
                        return _error(401, "missing or wrong bearer token (PAXLINE_API_TOKEN)")
                if not rt.node.is_leader:
                    return await forward(request)
                try:
                    return await fn(request)
                except ApiError as exc:
                    return _error(exc.status, exc.message, exc.field)

            handler.__name__ = fn.__name__
            return handler

        return wrap

    # ---------------------------------------------------------------------- handlers
    @endpoint(mutation=True)
    async def submit_job(request: Request) -> Response:
        spec = _decode_body(await request.body(), JobSpec)
        problem = validate_spec(spec)
        if problem:
            raise ApiError(400, problem, problem.split(" ", 1)[0].replace("spec.", "$."))
        return _result_response(await propose(request, SubmitJob(spec)))

    @endpoint(mutation=False)
    async def list_jobs(request: Request) -> Response:
        return JSONResponse({"jobs": await read("jobs")})

    @endpoint(mutation=False)
    async def get_job(request: Request) -> Response:
        name = request.path_params["name"]
        job = await read("job", name)
        if job is None:
            return _error(404, f"unknown job {name!r}", "name")
        return JSONResponse(job)

    @endpoint(mutation=True)
    async def cancel_job(request: Request) -> Response:
        return _result_response(await propose(request, CancelJob(request.path_params["name"])))

    @endpoint(mutation=True)
    async def pause_job(request: Request) -> Response:
        return _result_response(await propose(request, PauseJob(request.path_params["name"])))

    @endpoint(mutation=True)
    async def resume_job(request: Request) -> Response:
        return _result_response(await propose(request, ResumeJob(request.path_params["name"])))

    @endpoint(mutation=False)
    async def job_offsets(request: Request) -> Response:
        name = request.path_params["name"]
        offsets = await read("offsets", name)
        if offsets is None:
            return _error(404, f"unknown job {name!r}", "name")
        now = time.monotonic()
        for p in offsets:
            seen = progress.get((name, p["topic"], p["partition"]))
            fresh = seen is not None and now - seen[3] < _PROGRESS_TTL
            if fresh and seen is not None:
                # Heartbeats trail commits by up to a beat: never show an end before the
                # agreed offset, or a negative lag.
                agreed = p["offset"] or 0
                p["end_offset"] = max(seen[0], agreed)
                p["lag"] = p["end_offset"] - agreed
            else:
                p["end_offset"] = p["lag"] = None
        return JSONResponse({"job": name, "partitions": offsets})

    @endpoint(mutation=True)
    async def reset_offsets(request: Request) -> Response:
        body = _decode_body(await request.body(), _ResetBody)
        cmd = ResetOffsets(request.path_params["name"], _offsets(body.offsets, "offsets"))
        return _result_response(await propose(request, cmd))

    @endpoint(mutation=True)
    async def commit_checkpoint(request: Request) -> Response:
        body = _decode_body(await request.body(), _CheckpointBody)
        if body.epoch < 1:
            raise ApiError(400, "epoch must be >= 1", "$.epoch")
        cmd = CommitCheckpoint(
            request.path_params["name"],
            body.worker_id,
            body.epoch,
            _offsets(body.offsets, "offsets"),
        )
        return _result_response(await propose(request, cmd))

    @endpoint(mutation=True)
    async def heartbeat(request: Request) -> Response:
        worker_id = request.path_params["worker_id"]
        raw = await request.body()
        body = _decode_body(raw, _HeartbeatBody) if raw.strip() else _HeartbeatBody()
        if body.capacity < 1:
            raise ApiError(400, "capacity must be >= 1", "$.capacity")
        # Whether to register is decided from a linearizable read, never from this node's
        # replica: a leader elected a moment ago may not have applied a predecessor's
        # DeregisterWorker/ExpireWorker yet (issue 11). The registration and the assignment
        # come from one read, so the answer is one state of the machine. RegisterWorker is
        # idempotent in its apply, so a race with a concurrent change cannot double-register.
        seen = await read("heartbeat", worker_id)
        known, assignment = seen["worker"], seen["assignment"]
        if known is None or known["capacity"] != body.capacity:
            result = await propose(request, RegisterWorker(worker_id, body.capacity))
            if not isinstance(result, WorkerRegistered):
                return _result_response(result)
            assignment = await read("assignment", worker_id)
        now = time.monotonic()
        sessions.touch(worker_id, now)
        for p in body.progress:  # soft state, like sessions: for lag, never for decisions
            progress[(p.job, p.topic, p.partition)] = (p.end, p.position, worker_id, now)
        return JSONResponse(
            {
                "worker_id": worker_id,
                "session_timeout": sessions.timeout,
                "assignment": assignment,
            }
        )

    @endpoint(mutation=True)
    async def deregister(request: Request) -> Response:
        worker_id = request.path_params["worker_id"]
        result = await propose(request, DeregisterWorker(worker_id))
        if isinstance(result, WorkerDeregistered):
            sessions.forget(worker_id)
        return _result_response(result)

    @endpoint(mutation=False)
    async def list_workers(request: Request) -> Response:
        return JSONResponse({"workers": await read("workers")})

    async def cluster(request: Request) -> Response:
        return JSONResponse(rt.status())

    async def cluster_nodes(request: Request) -> Response:
        """Every node's own view, gathered by this node (one origin for the dashboard)."""

        async def view(node: int, url: str) -> dict[str, Any]:
            if node == rt.cfg.node_id:
                return {"api": url, **rt.status()}
            try:
                resp = await forward_client.get(url + "/v1/cluster", timeout=1.0)
                return {"api": url, **resp.json()}
            except (httpx.HTTPError, ValueError) as exc:
                return {"api": url, "node_id": node, "role": "unreachable", "error": str(exc)}

        urls = sorted(rt.api_urls.items())
        views = await asyncio.gather(*(view(n, u) for n, u in urls))
        peers = set(rt.cfg.peers) - {n for n, _ in urls}
        views += [{"node_id": n, "role": "unknown", "api": None} for n in sorted(peers)]
        return JSONResponse({"nodes": views})

    async def metrics(request: Request) -> Response:
        body, content_type = render_metrics(rt)
        return Response(body, media_type=content_type)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(index_html())

    app = Starlette(
        routes=[
            Route("/", dashboard),
            Mount("/static", StaticFiles(directory=static_dir()), name="static"),
            Route("/metrics", metrics),
            Route("/openapi.json", openapi),
            Route("/v1/cluster", cluster),
            Route("/v1/cluster/nodes", cluster_nodes),
            Route("/v1/jobs", submit_job, methods=["POST"]),
            Route("/v1/jobs", list_jobs, methods=["GET"]),
            Route("/v1/jobs/{name}", get_job, methods=["GET"]),
            Route("/v1/jobs/{name}", cancel_job, methods=["DELETE"]),
            Route("/v1/jobs/{name}/pause", pause_job, methods=["POST"]),
            Route("/v1/jobs/{name}/resume", resume_job, methods=["POST"]),
            Route("/v1/jobs/{name}/offsets", job_offsets, methods=["GET"]),
            Route("/v1/jobs/{name}/offsets:reset", reset_offsets, methods=["POST"]),
            Route("/v1/jobs/{name}/checkpoints", commit_checkpoint, methods=["POST"]),
            Route("/v1/workers", list_workers, methods=["GET"]),
            Route("/v1/workers/{worker_id}/heartbeat", heartbeat, methods=["POST"]),
            Route("/v1/workers/{worker_id}", deregister, methods=["DELETE"]),
        ],
    )

    async def expire_lapsed() -> None:
        """Leader only: propose `ExpireWorker` for sessions that ran out.

        The registry comes from a linearizable read (not this node's replica, which a new
        leader may not have brought up to date), and each `ExpireWorker` names the
        registration that lapsed, so its apply refuses it (`StaleExpiry`) if the worker
        re-registered meanwhile: the machine, not this loop, makes the final decision."""
        if not rt.node.serving or rt.leader_since is None:
            return
        res = await rt.read(encode_query("workers"))
        if not res.ok:
            return  # lost leadership or no quorum; the next round tries again
        registered = {w["worker_id"]: w["registered_at"] for w in msgspec.json.decode(res.value)}
        for worker_id, registered_at in sessions.lapsed(registered, time.monotonic()):
            await rt.propose(encode_command(ExpireWorker(worker_id, registered_at)))

    app.state.expire_lapsed = expire_lapsed
    app.state.sessions = sessions
    app.state.forward_client = forward_client
    return app
