"""The routes every worker calls every second, dispatched without Starlette's router and
middleware: `POST /v1/workers/{id}/heartbeat`, `POST /v1/workers/{id}/checkpoints` and
`POST /v1/jobs/{name}/checkpoints` (issue 17: at 64 clients Starlette's middleware stack and
regex routing were about a quarter of the leader's CPU, docs/benchmarks-coordinator.md,
"Findings, 1"). The handlers are the same functions the Starlette routes call (token check,
forwarding, errors as JSON), so the answers are byte for byte the same; every other request,
and any path these do not match exactly, goes to the Starlette app as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["HotPaths"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[[Request], Awaitable[Response]]


class HotPaths:
    """ASGI app: `/v1/<group>/<param>/<action>` routes by a dict lookup, the rest to `app`."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        routes: list[Route],
        state: State,
    ) -> None:
        self.app = app
        self.state = state  # the Starlette app's, which main.py reads
        self.table: dict[tuple[str, str, str], tuple[Handler, str]] = {}
        for route in routes:
            parts = route.path.split("/")
            shape = len(parts) == 5 and parts[:2] == ["", "v1"] and parts[3].startswith("{")
            if not shape or route.methods is None:
                raise ValueError(f"not a /v1/<group>/{{param}}/<action> route: {route.path}")
            for method in route.methods - {"HEAD"}:
                self.table[(method, parts[2], parts[4])] = (route.endpoint, parts[3][1:-1])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            if len(parts) == 5 and parts[1] == "v1" and parts[0] == "" and parts[3]:
                hit = self.table.get((scope["method"], parts[2], parts[4]))
                if hit is not None:
                    handler, name = hit
                    scope["path_params"] = {name: parts[3]}
                    response = await handler(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
