"""What every route group shares: errors as JSON, body decoding, and the `Api` context that
proposes commands, serves linearizable reads and forwards to the leader.

Followers forward requests to the leader, so a client may talk to any node. Mutations need
the bearer token; every mutation is one Paxos command, so it is applied entirely or not at
all, and a request that fails validation is refused before anything is proposed.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse as _StarletteJSON
from starlette.responses import Response

from coordinator._httpx import httpx
from coordinator.commands import (
    CheckpointBatchApplied,
    Fenced,
    InvalidCommand,
    JobExists,
    JobNotPaused,
    JobSubmitted,
    OffsetRegression,
    Result,
    UnknownJob,
    UnknownPartition,
    UnknownTopic,
    UnknownWorker,
    decode_result,
    encode_command,
)
from coordinator.protocol import OffsetEntry
from coordinator.server.metadata_app import encode_query
from coordinator.server.runtime import NodeRuntime
from coordinator.server.sessions import WorkerSessions

__all__ = [
    "Api",
    "ApiError",
    "Handler",
    "JSONResponse",
    "decode_body",
    "error",
    "offsets_of",
    "result_response",
]

Handler = Callable[[Request], Awaitable[Response]]
_T = TypeVar("_T")
FORWARDED = "x-paxline-forwarded"
LEADER_HEADER = "paxline-leader"

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


class JSONResponse(_StarletteJSON):
    """Encoded by msgspec, not `json.dumps`: every heartbeat and checkpoint answer is one, and
    the stdlib encoder was 6.7% of the leader's CPU at 1,000 workers (py-spy, issue 17).
    Same compact UTF-8 output; msgspec structs encode directly."""

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status)


def result_response(result: Result) -> Response:
    body = _result_body(result)
    if isinstance(result, CheckpointBatchApplied):
        # Applied as a whole (200); each group says what happened to it, in the same words
        # as the answer to a single commit of that group.
        body["results"] = [None if r is None else _result_body(r) for r in result.results]
    return JSONResponse(body, status_code=_STATUS.get(type(result), 200))


def _result_body(result: Result) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(result)
    body["result"] = type(result).__name__
    if _STATUS.get(type(result), 200) >= 400:
        body["error"] = _describe(result)
    return body


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


def decode_body(request_body: bytes, tp: type[_T]) -> _T:
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


def offsets_of(entries: list[OffsetEntry], path: str) -> dict[tuple[str, int], int]:
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


@dataclass
class Api:
    """One node's API state: the runtime, worker sessions and reported progress (soft state,
    never used for a decision), and the client that forwards to the leader."""

    rt: NodeRuntime
    sessions: WorkerSessions
    forward_client: httpx.AsyncClient
    # (job, topic, partition) -> (end offset, worker position, worker, when, stalled reason,
    # stalled since): reported by workers in heartbeats so the dashboard can chart lag and
    # show stalls without talking to Kafka.
    progress: dict[
        tuple[str, str, int], tuple[int, int | None, str, float, str | None, float | None]
    ] = field(default_factory=dict)

    @classmethod
    def for_runtime(cls, rt: NodeRuntime) -> Api:
        tls = rt.cfg.tls
        # Forwarding reaches the leader's HTTPS API like any client: verified against the CA.
        verify = tls.client_context(present_cert=False) if tls else True
        forward = httpx.AsyncClient(timeout=10, verify=verify)
        api = cls(rt, WorkerSessions(rt.cfg.worker_session_timeout), forward)
        rt.on_leadership.append(lambda: api.sessions.grant_grace(time.monotonic()))
        return api

    def session_of(self, request: Request) -> tuple[str | None, int | None]:
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

    async def propose(self, request: Request, command: Any) -> Result:
        cid, seq = self.session_of(request)
        res = await self.rt.propose(encode_command(command), cid, seq)
        if not res.ok:
            if res.error == "stale_seq":
                raise ApiError(409, "Paxline-Seq is older than this client's latest command")
            raise ApiError(503, f"not committed ({res.error}); retry", None)
        return decode_result(res.result)

    async def read(self, op: str, name: str = "", tp: Any = None) -> Any:
        """A linearizable read (read-index on the leader), decoded as `tp` (a type msgspec
        understands, e.g. `list[PartitionStatus] | None`) when given."""
        res = await self.rt.read(encode_query(op, name))
        if not res.ok:
            raise ApiError(503, f"read not served ({res.error}); retry")
        if tp is None:
            return msgspec.json.decode(res.value)
        return msgspec.json.decode(res.value, type=tp)

    async def forward(self, request: Request) -> Response:
        url = self.rt.leader_url()
        if url is None or request.headers.get(FORWARDED):
            return error(503, "no leader is known yet; retry shortly", retry=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        headers[FORWARDED] = str(self.rt.cfg.node_id)
        try:
            resp = await self.forward_client.request(
                request.method,
                url + request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return error(503, f"leader at {url} unreachable ({type(exc).__name__}); retry")
        out = Response(resp.content, resp.status_code, media_type=resp.headers.get("content-type"))
        # Where the leader is, so that a client can talk to it directly from now on: a client
        # that stays with a follower after a leader change makes every request cost two HTTP
        # exchanges, and the follower's forwarding was 42% of a node's CPU at 1,000 workers
        # (issue 17, docs/benchmarks-coordinator.md "Scale").
        out.headers[LEADER_HEADER] = url
        return out

    def endpoint(self, fn: Handler, *, mutation: bool) -> Handler:
        """Token check for mutations, forwarding from followers, `ApiError` as JSON."""
        token = self.rt.cfg.api_token.encode()

        async def handler(request: Request) -> Response:
            if mutation:
                auth = request.headers.get("authorization", "")
                given = auth[7:].encode() if auth.startswith("Bearer ") else b""
                if not hmac.compare_digest(given, token):
                    return error(401, "missing or wrong bearer token (PAXLINE_API_TOKEN)")
            if not self.rt.node.is_leader:
                return await self.forward(request)
            try:
                return await fn(request)
            except ApiError as exc:
                return error(exc.status, exc.message, exc.field)

        handler.__name__ = fn.__name__
        return handler

    def reader(self, fn: Handler) -> Handler:
        return self.endpoint(fn, mutation=False)

    def writer(self, fn: Handler) -> Handler:
        return self.endpoint(fn, mutation=True)
