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


def build_app(rt: NodeRuntime) -> Starlette:
    api = Api.for_runtime(rt)
    app = Starlette(routes=[*cluster_routes(api), *job_routes(api), *worker_routes(api)])
    app.state.expire_lapsed = expiry(api)
    app.state.sessions = api.sessions
    app.state.forward_client = api.forward_client
    return app
