"""Routes of the job life cycle: submit, list, pause/resume, cancel, offsets, checkpoints."""

from __future__ import annotations

import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from coordinator.commands import (
    CancelJob,
    CommitCheckpoint,
    PauseJob,
    ResetOffsets,
    ResumeJob,
    SubmitJob,
)
from coordinator.metadata import validate_spec
from coordinator.protocol import (
    CheckpointBody,
    JobSpec,
    PartitionOffsets,
    PartitionStatus,
    ResetBody,
)
from coordinator.server.api.common import (
    Api,
    ApiError,
    JSONResponse,
    decode_body,
    error,
    offsets_of,
    result_response,
)

__all__ = ["job_routes"]

# A worker's report of a partition's end offset older than this is not shown as lag.
PROGRESS_TTL = 30.0


def job_routes(api: Api) -> list[Route]:
    async def submit_job(request: Request) -> Response:
        spec = decode_body(await request.body(), JobSpec)
        problem = validate_spec(spec)
        if problem:
            raise ApiError(400, problem, problem.split(" ", 1)[0].replace("spec.", "$."))
        return result_response(await api.propose(request, SubmitJob(spec)))

    async def list_jobs(request: Request) -> Response:
        return JSONResponse({"jobs": await api.read("jobs")})

    async def get_job(request: Request) -> Response:
        name = request.path_params["name"]
        job = await api.read("job", name)
        if job is None:
            return error(404, f"unknown job {name!r}", "name")
        return JSONResponse(job)

    async def cancel_job(request: Request) -> Response:
        return result_response(await api.propose(request, CancelJob(request.path_params["name"])))

    async def pause_job(request: Request) -> Response:
        return result_response(await api.propose(request, PauseJob(request.path_params["name"])))

    async def resume_job(request: Request) -> Response:
        return result_response(await api.propose(request, ResumeJob(request.path_params["name"])))

    async def job_offsets(request: Request) -> Response:
        name = request.path_params["name"]
        agreed = await api.read("offsets", name, list[PartitionStatus] | None)
        if agreed is None:
            return error(404, f"unknown job {name!r}", "name")
        now = time.monotonic()
        out: list[PartitionOffsets] = []
        for p in agreed:
            seen = api.progress.get((name, p.topic, p.partition))
            end = lag = since = None
            stalled: str | None = None
            if seen is not None and now - seen[3] < PROGRESS_TTL:
                # Heartbeats trail commits by up to a beat: never show an end before the
                # agreed offset, or a negative lag.
                end = max(seen[0], p.offset or 0)
                lag = end - (p.offset or 0)
                if seen[2] == p.owner:  # a stall reported by a previous owner is over
                    stalled, since = seen[4], seen[5]
            out.append(PartitionOffsets(p.topic, p.partition, p.offset, p.owner, p.epoch, end, lag,
                                        stalled, since))  # fmt: skip
        return JSONResponse({"job": name, "partitions": msgspec.to_builtins(out)})

    async def reset_offsets(request: Request) -> Response:
        body = decode_body(await request.body(), ResetBody)
        cmd = ResetOffsets(request.path_params["name"], offsets_of(body.offsets, "offsets"))
        return result_response(await api.propose(request, cmd))

    async def commit_checkpoint(request: Request) -> Response:
        body = decode_body(await request.body(), CheckpointBody)
        if body.epoch < 1:
            raise ApiError(400, "epoch must be >= 1", "$.epoch")
        cmd = CommitCheckpoint(
            request.path_params["name"],
            body.worker_id,
            body.epoch,
            offsets_of(body.offsets, "offsets"),
        )
        return result_response(await api.propose(request, cmd))

    read, write = api.reader, api.writer
    return [
        Route("/v1/jobs", write(submit_job), methods=["POST"]),
        Route("/v1/jobs", read(list_jobs), methods=["GET"]),
        Route("/v1/jobs/{name}", read(get_job), methods=["GET"]),
        Route("/v1/jobs/{name}", write(cancel_job), methods=["DELETE"]),
        Route("/v1/jobs/{name}/pause", write(pause_job), methods=["POST"]),
        Route("/v1/jobs/{name}/resume", write(resume_job), methods=["POST"]),
        Route("/v1/jobs/{name}/offsets", read(job_offsets), methods=["GET"]),
        Route("/v1/jobs/{name}/offsets:reset", write(reset_offsets), methods=["POST"]),
        Route("/v1/jobs/{name}/checkpoints", write(commit_checkpoint), methods=["POST"]),
    ]
