"""Routes of worker sessions: heartbeat (registers, returns the assignment), a worker's batch
of checkpoint commits, deregister, list; and the leader's expiry of lapsed sessions."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coordinator.commands import (
    CheckpointBatchApplied,
    CheckpointGroup,
    CommitCheckpointBatch,
    DeregisterWorker,
    ExpireWorker,
    RegisterWorker,
    WorkerDeregistered,
    WorkerRegistered,
    encode_command,
)
from coordinator.protocol import (
    AssignedPartition,
    CheckpointBatchBody,
    HeartbeatBody,
    HeartbeatReply,
    WorkerInfo,
)
from coordinator.server.api.common import (
    Api,
    ApiError,
    JSONResponse,
    decode_body,
    offsets_of,
    result_response,
)

__all__ = ["expiry", "worker_routes"]


class _Seen(msgspec.Struct, frozen=True):
    """Registration and assignment of one worker, read from one state of the machine."""

    worker: WorkerInfo | None
    assignment: list[AssignedPartition]


def worker_routes(api: Api) -> list[Route]:
    async def heartbeat(request: Request) -> Response:
        worker_id = request.path_params["worker_id"]
        raw = await request.body()
        body = decode_body(raw, HeartbeatBody) if raw.strip() else HeartbeatBody()
        if body.capacity < 1:
            raise ApiError(400, "capacity must be >= 1", "$.capacity")
        # Whether to register is decided from a linearizable read, never from this node's
        # replica: a leader elected a moment ago may not have applied a predecessor's
        # DeregisterWorker/ExpireWorker yet (issue 11). The registration and the assignment
        # come from one read, so the answer is one state of the machine. RegisterWorker is
        # idempotent in its apply, so a race with a concurrent change cannot double-register.
        seen = await api.read("heartbeat", worker_id, _Seen)
        assignment = seen.assignment
        if seen.worker is None or seen.worker.capacity != body.capacity:
            result = await api.propose(request, RegisterWorker(worker_id, body.capacity))
            if not isinstance(result, WorkerRegistered):
                return result_response(result)
            assignment = await api.read("assignment", worker_id, list[AssignedPartition])
        now = time.monotonic()
        api.sessions.touch(worker_id, now)
        for p in body.progress:  # soft state, like sessions: for lag, never for decisions
            api.progress[(p.job, p.topic, p.partition)] = (
                p.end, p.position, worker_id, now, p.stalled, p.stalled_since
            )  # fmt: skip
        reply = HeartbeatReply(worker_id, api.sessions.timeout, assignment)
        return JSONResponse(reply)

    async def deregister(request: Request) -> Response:
        worker_id = request.path_params["worker_id"]
        result = await api.propose(request, DeregisterWorker(worker_id))
        if isinstance(result, WorkerDeregistered):
            api.sessions.forget(worker_id)
        return result_response(result)

    async def commit_checkpoints(request: Request) -> Response:
        """Every (job, epoch) group of one worker's interval in one command; the whole body
        is validated first, so a malformed group refuses the request (400 naming it) with
        nothing proposed. Answers 200 with each group's own result (`results`), fenced or
        not: the batch itself was applied."""
        body = decode_body(await request.body(), CheckpointBatchBody)
        if not body.groups:
            raise ApiError(400, "groups must not be empty", "$.groups")
        groups = []
        seen: set[tuple[str, str, int]] = set()
        for i, g in enumerate(body.groups):
            if g.epoch < 1:
                raise ApiError(400, "epoch must be >= 1", f"$.groups[{i}].epoch")
            offsets = offsets_of(g.offsets, f"groups[{i}].offsets")
            for topic, partition in offsets:
                if (g.job, topic, partition) in seen:
                    raise ApiError(400, "partition listed in an earlier group too",
                                   f"$.groups[{i}].offsets")  # fmt: skip
                seen.add((g.job, topic, partition))
            groups.append(CheckpointGroup(g.job, g.epoch, offsets))
        cmd = CommitCheckpointBatch(request.path_params["worker_id"], tuple(groups))
        result = await api.propose(request, cmd)
        if isinstance(result, CheckpointBatchApplied) and len(result.results) == len(groups):
            result = result.expanded(cmd.groups)
        return result_response(result)

    async def list_workers(request: Request) -> Response:
        return JSONResponse({"workers": await api.read("workers")})

    return [
        Route("/v1/workers", api.reader(list_workers), methods=["GET"]),
        Route("/v1/workers/{worker_id}/heartbeat", api.writer(heartbeat), methods=["POST"]),
        Route("/v1/workers/{worker_id}", api.writer(deregister), methods=["DELETE"]),
        Route(
            "/v1/workers/{worker_id}/checkpoints",
            api.writer(commit_checkpoints),
            methods=["POST"],
        ),
    ]


def expiry(api: Api) -> Callable[[], Awaitable[None]]:
    async def expire_lapsed() -> None:
        """Leader only: propose `ExpireWorker` for sessions that ran out.

        The registry comes from a linearizable read (not this node's replica, which a new
        leader may not have brought up to date), and each `ExpireWorker` names the
        registration that lapsed, so its apply refuses it (`StaleExpiry`) if the worker
        re-registered meanwhile: the machine, not this loop, makes the final decision."""
        rt = api.rt
        if not rt.node.serving or rt.leader_since is None:
            return
        try:
            workers = await api.read("workers", tp=list[WorkerInfo])
        except ApiError:
            return  # lost leadership or no quorum; the next round tries again
        registered = {w.worker_id: w.registered_at for w in workers}
        for worker_id, registered_at in api.sessions.lapsed(registered, time.monotonic()):
            await rt.propose(encode_command(ExpireWorker(worker_id, registered_at)))

    return expire_lapsed
