"""The OpenAPI document of the coordinator API (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

import msgspec

from coordinator.protocol import JobSpec

__all__ = ["openapi_document"]

_MUTATION: dict[str, Any] = {"security": [{"bearer": []}]}


def _fenced_offsets(named: str, offsets: dict[str, Any]) -> dict[str, Any]:
    """Offsets fenced by an epoch: a single checkpoint names its worker, a batch's group its
    job; the rest of the shape is the same, and must stay so (one fencing rule)."""
    return {
        "type": "object",
        "required": [named, "epoch", "offsets"],
        "properties": {
            named: {"type": "string"},
            "epoch": {"type": "integer", "minimum": 1},
            "offsets": offsets,
        },
    }


def _op(summary: str, mutation: bool = False, body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": {"description": "OK"}}}
    if mutation:
        op.update(_MUTATION)
        op["responses"]["401"] = {"description": "missing or wrong bearer token"}
        op["responses"]["400"] = {"description": "invalid request; `field` names the problem"}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return op


def openapi_document() -> dict[str, Any]:
    (spec_schema,), components = msgspec.json.schema_components([JobSpec])
    offsets = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["topic", "partition", "offset"],
            "properties": {
                "topic": {"type": "string"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
            },
        },
    }
    components["Checkpoint"] = _fenced_offsets("worker_id", offsets)
    components["CheckpointBatch"] = {
        "type": "object",
        "description": "All of one worker's (job, epoch) groups of one interval, in one Paxos "
        "command (issue 17). Each group is applied exactly as a single checkpoint of it "
        "would be, in the order given, and fenced or refused on its own: the answer (200) "
        "lists per group `result` (`CheckpointCommitted`, `Fenced`, `OffsetRegression`, "
        "`UnknownJob`, `UnknownPartition`) with the fields and `error` a single commit's "
        "answer has. A malformed batch (no groups, an empty or bad offset list, a partition "
        "in two groups) is refused whole with a 400 naming the field; nothing of it is "
        "applied.",
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": _fenced_offsets("job", offsets),
            }
        },
    }
    components["OffsetsReset"] = {
        "type": "object",
        "required": ["offsets"],
        "properties": {"offsets": offsets},
    }
    components["Heartbeat"] = {
        "type": "object",
        "properties": {
            "capacity": {"type": "integer", "minimum": 1},
            "progress": {
                "type": "array",
                "description": "the worker's position and Kafka's end offset per partition",
                "items": {
                    "type": "object",
                    "required": ["job", "topic", "partition", "position", "end"],
                    "properties": {
                        "job": {"type": "string"},
                        "topic": {"type": "string"},
                        "partition": {"type": "integer"},
                        "position": {"type": ["integer", "null"]},
                        "end": {"type": "integer"},
                    },
                },
            },
        },
    }
    components["MemberChange"] = {
        "type": "object",
        "description": "Add node `id` (peer listener at `peer`), or with `replace` swap member "
        "`replace` for it in one change. The answer comes once the change is chosen; it "
        "takes effect at `effective_slot` (`in_effect` says whether it already has).",
        "required": ["id", "peer"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "never used before"},
            "peer": {"type": "string", "description": "HOST:PORT of its peer listener"},
            "api": {"type": "string", "description": "its API URL (optional)"},
            "replace": {"type": "integer", "minimum": 1, "description": "member to swap out"},
        },
    }
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    member = [{"name": "node_id", "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1}}]  # fmt: skip
    worker = [{"name": "worker_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "paxline coordinator API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/cluster": {
                "get": _op(
                    "This node's view: role, ballot, commit/applied index, membership "
                    "(members, changes pending, `in_effect`)"
                )
            },
            "/v1/cluster/nodes": {"get": _op("Every node's view, gathered by this node")},
            "/v1/cluster/members": {
                "post": _op(
                    "Add a coordinator node, or replace one (chosen through Paxos; in effect "
                    "alpha slots later)",
                    True,
                    "MemberChange",
                ),
            },
            "/v1/cluster/members/{node_id}": {
                "parameters": member,
                "delete": _op("Remove a coordinator node (chosen through Paxos)", True),
            },
            "/v1/jobs": {
                "get": _op("List jobs (linearizable)"),
                "post": _op("Submit a job", True, "JobSpec"),
            },
            "/v1/jobs/{name}": {
                "parameters": name,
                "get": _op("One job's spec and state"),
                "delete": _op("Cancel a job", True),
            },
            "/v1/jobs/{name}/pause": {"parameters": name, "post": _op("Pause a job", True)},
            "/v1/jobs/{name}/resume": {"parameters": name, "post": _op("Resume a job", True)},
            "/v1/jobs/{name}/offsets": {
                "parameters": name,
                "get": _op("Agreed offsets, owners and epochs per partition"),
            },
            "/v1/jobs/{name}/offsets:reset": {
                "parameters": name,
                "post": _op("Reset offsets of a paused job", True, "OffsetsReset"),
            },
            "/v1/jobs/{name}/checkpoints": {
                "parameters": name,
                "post": _op("Commit a fenced checkpoint", True, "Checkpoint"),
            },
            "/v1/workers": {"get": _op("Registered workers")},
            "/v1/workers/{worker_id}/heartbeat": {
                "parameters": worker,
                "post": _op(
                    "Heartbeat; returns the worker's assignment and epochs", True, "Heartbeat"
                ),
            },
            "/v1/workers/{worker_id}/checkpoints": {
                "parameters": worker,
                "post": _op(
                    "Commit all of a worker's checkpoint groups at once, each fenced on its own",
                    True,
                    "CheckpointBatch",
                ),
            },
            "/v1/workers/{worker_id}": {
                "parameters": worker,
                "delete": _op("Deregister a worker", True),
            },
            "/metrics": {"get": _op("Prometheus metrics")},
        },
        "x-job-spec": spec_schema,
    }
