"""The per-second worker routes are dispatched by a dict lookup straight to their handler
(coordinator/server/api/hot.py); everything else reaches the Starlette app as before."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coordinator._httpx import httpx
from coordinator.server.api.hot import HotPaths


async def beat(request: Request) -> Response:
    return JSONResponse({"route": "beat", "worker": request.path_params["worker_id"]})


async def commit(request: Request) -> Response:
    return JSONResponse({"route": "commit", "job": request.path_params["name"]})


async def listing(request: Request) -> Response:
    return JSONResponse({"route": "list"})


def make() -> tuple[HotPaths, list[str]]:
    hot = [
        Route("/v1/workers/{worker_id}/heartbeat", beat, methods=["POST"]),
        Route("/v1/jobs/{name}/checkpoints", commit, methods=["POST"]),
    ]
    app = Starlette(routes=[*hot, Route("/v1/workers", listing)])
    through: list[str] = []

    async def counted(scope, receive, send):  # type: ignore[no-untyped-def]
        through.append(scope["path"])
        await app(scope, receive, send)

    return HotPaths(counted, hot, app.state), through


# (method, path, status, body or None, whether Starlette answered)
CASES = [
    ("POST", "/v1/workers/w-1/heartbeat", 200, {"route": "beat", "worker": "w-1"}, False),
    ("POST", "/v1/jobs/orders/checkpoints", 200, {"route": "commit", "job": "orders"}, False),
    ("GET", "/v1/workers/w-1/heartbeat", 405, None, True),
    ("POST", "/v1/workers//heartbeat", 404, None, True),
    ("POST", "/v1/workers/a/b/heartbeat", 404, None, True),
    ("POST", "/v1/workers/w-1/heartbeat/", 200, {"route": "beat", "worker": "w-1"}, True),
    ("GET", "/v1/workers", 200, {"route": "list"}, True),
    ("POST", "/v2/workers/w-1/heartbeat", 404, None, True),
]


@pytest.mark.parametrize(("method", "path", "status", "body", "starlette"), CASES)
def test_hot_routes_skip_starlette_and_the_rest_reach_it(
    method: str, path: str, status: int, body: dict[str, str] | None, starlette: bool
) -> None:
    app, through = make()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.request(method, path, follow_redirects=True)

    resp = asyncio.run(call())
    assert resp.status_code == status
    if body is not None:
        assert resp.json() == body
    assert bool(through) == starlette


def test_a_route_of_another_shape_is_refused_at_build() -> None:
    with pytest.raises(ValueError, match="/v1/workers"):
        HotPaths(Starlette(), [Route("/v1/workers", listing)], Starlette().state)
