"""The HTTP API every coordinator serves, one module per route group: `jobs`, `workers`,
`cluster`; `common` holds what they share (docs/architecture.md, sec. 2, "API")."""

from __future__ import annotations

from starlette.applications import Starlette

from coordinator.server.api.cluster import cluster_routes
from coordinator.server.api.common import Api
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


def build_app(rt: NodeRuntime) -> Starlette:
    api = Api.for_runtime(rt)
    routes = [*cluster_routes(api), *job_routes(api), *worker_routes(api)]
    # Starlette tries routes in order, one regex each: the routes every worker calls every
    # second go first (checkpoints was 15th of 18; 4.7% of the leader's CPU at 64
    # clients was Route.matches, docs/benchmarks-coordinator.md). No other route matches
    # their paths, so the order changes nothing else.
    routes.sort(key=lambda r: getattr(r, "path", "") not in _HOT)
    app = Starlette(routes=routes)
    app.state.expire_lapsed = expiry(api)
    app.state.sessions = api.sessions
    app.state.forward_client = api.forward_client
    return app
