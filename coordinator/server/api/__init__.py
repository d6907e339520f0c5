"""The HTTP API every coordinator serves, one module per route group: `jobs`, `workers`,
`cluster`; `common` holds what they share (docs/architecture.md, sec. 2, "API")."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from coordinator.server.api.cluster import cluster_routes
from coordinator.server.api.common import Api
from coordinator.server.api.hot import HotPaths
from coordinator.server.api.jobs import job_routes
from coordinator.server.api.workers import expiry, worker_routes
from coordinator.server.runtime import NodeRuntime

__all__ = ["build_app"]

_HOT = frozenset(
    {
        "/v1/workers/{worker_id}/checkpoints",
        "/v1/workers/{worker_id}/heartbeat",
        "/v1/jobs/{name}/checkpoints",
    }
)


def build_app(rt: NodeRuntime) -> HotPaths:
    api = Api.for_runtime(rt)
    routes = [*cluster_routes(api), *job_routes(api), *worker_routes(api)]
    app = Starlette(routes=routes)
    app.state.expire_lapsed = expiry(api)
    app.state.sessions = api.sessions
    app.state.forward_client = api.forward_client
    # The routes every worker calls every second skip Starlette's router and middleware
    # (api/hot.py). The Starlette app keeps them too: a request the fast path does not match
    # exactly (another method, a trailing slash) gets Starlette's answer, as before.
    hot = [r for r in routes if isinstance(r, Route) and r.path in _HOT]
    return HotPaths(app, hot, app.state)
