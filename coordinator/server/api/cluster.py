"""Routes that describe the node and the cluster: status, every node's view, Prometheus
metrics, the OpenAPI document and the dashboard. They answer from this node's own view on
purpose (no forwarding, no decision rests on them)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from coordinator.server.api.common import Api
from coordinator.server.dashboard import index_html, static_dir
from coordinator.server.metrics import render_metrics
from coordinator.server.openapi import openapi_document

__all__ = ["cluster_routes"]


def cluster_routes(api: Api) -> list[BaseRoute]:
    rt = api.rt

    async def cluster(request: Request) -> Response:
        return JSONResponse(rt.status())

    async def cluster_nodes(request: Request) -> Response:
        """Every node's own view, gathered by this node (one origin for the dashboard)."""

        async def view(node: int, url: str) -> dict[str, Any]:
            if node == rt.cfg.node_id:
                return {"api": url, **rt.status()}
            try:
                resp = await api.forward_client.get(url + "/v1/cluster", timeout=1.0)
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

    return [
        Route("/", dashboard),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/v1/cluster", cluster),
        Route("/v1/cluster/nodes", cluster_nodes),
    ]
