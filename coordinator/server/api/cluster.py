"""Routes that describe the node and the cluster: status, every node's view, Prometheus
metrics, the OpenAPI document and the dashboard. They answer from this node's own view on
purpose (no forwarding, no decision rests on them)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from coordinator._httpx import httpx
from coordinator.paxos.membership import (
    add_node_command,
    remove_node_command,
    replace_node_command,
)
from coordinator.server.api.common import Api, ApiError, JSONResponse, decode_body, error
from coordinator.server.dashboard import index_html, static_dir
from coordinator.server.metrics import render_metrics
from coordinator.server.openapi import openapi_document

__all__ = ["MemberChange", "cluster_routes"]


class MemberChange(msgspec.Struct, forbid_unknown_fields=True):
    """Add node `id` (its peer listener at `peer`, HOST:PORT), or with `replace` swap member
    `replace` for it in one change. `api` (its API URL) is optional: nodes learn each
    other's API addresses from their hellos."""

    id: int
    peer: str
    api: str | None = None
    replace: int | None = None


def _check_peer(text: str) -> None:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ApiError(400, f"peer must look like HOST:PORT, got {text!r}", "$.peer")


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
        peers = ({*rt.node.membership.latest(), *rt.transport.peers}
                 - {n for n, _ in urls})  # fmt: skip
        views += [{"node_id": n, "role": "unknown", "api": None} for n in sorted(peers)]
        return JSONResponse({"nodes": views})

    async def change(request: Request, payload: bytes) -> Response:
        """Propose a membership change and answer once it is chosen, with the slot at which
        it takes effect (`effective_slot`) and whether this node has applied that far."""
        cid, seq = api.session_of(request)  # a retry gets the first answer back
        res = await rt.propose(payload, cid, seq)
        if not res.ok:
            if res.error == "stale_seq":
                return error(409, "Paxline-Seq is older than this client's latest command")
            return error(503, f"not chosen ({res.error}); retry", retry=True)
        body = json.loads(res.result)
        if not body.get("ok"):
            return error(409, str(body.get("detail")))
        eff = body.get("effective_slot")
        status = rt.membership_status()
        reached = eff is None or rt.node.applied + 1 >= int(eff)
        body["in_effect"] = reached and bool(status["in_effect"])
        body["membership"] = status
        return JSONResponse(body)

    async def add_member(request: Request) -> Response:
        req = decode_body(await request.body(), MemberChange)
        if req.id < 1:
            raise ApiError(400, "id must be a positive integer", "$.id")
        _check_peer(req.peer)
        if req.api is not None and not req.api.startswith(("http://", "https://")):
            raise ApiError(400, "api must be an http:// or https:// URL", "$.api")
        if req.replace is None:
            return await change(request, add_node_command(req.id, req.peer))
        if req.replace < 1 or req.replace == req.id:
            raise ApiError(400, "replace must name another member's id", "$.replace")
        return await change(request, replace_node_command(req.replace, req.id, req.peer))

    async def remove_member(request: Request) -> Response:
        text = request.path_params["node_id"]
        if not text.isdigit() or int(text) < 1:
            raise ApiError(400, f"node id must be a positive integer, got {text!r}", "node_id")
        return await change(request, remove_node_command(int(text)))

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
        Route("/v1/cluster/members", api.writer(add_member), methods=["POST"]),
        Route("/v1/cluster/members/{node_id}", api.writer(remove_member), methods=["DELETE"]),
    ]
