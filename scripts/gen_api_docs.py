"""Write docs/api.md from the coordinator's OpenAPI document (`--check` fails if stale)."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from coordinator.server.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "api.md"


def normalised(node: Any) -> Any:
    """The document with every description dedented by `inspect.cleandoc`: libraries differ in
    how they turn a docstring into a description (msgspec 0.23 dedents, 0.22 did not), and the
    generated file must change only when the API does."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else normalised(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [normalised(v) for v in node]
    return node


def render(doc: dict[str, Any]) -> str:
    doc = normalised(doc)
    out = [
        "# paxline coordinator HTTP API",
        "",
        "Generated from `/openapi.json` by `python scripts/gen_api_docs.py`; do not edit.",
        "",
        "Every coordinator serves the whole API; followers forward to the leader. Mutations "
        "need `Authorization: Bearer $PAXLINE_API_TOKEN`. Mutations may carry a client session "
        "(`Paxline-Client-Id`, `Paxline-Seq`): a retry with the same pair is applied at most "
        'once and gets the first answer again. Errors are JSON `{"error": ..., "field": '
        "...}` with a 4xx status; 503 means no leader yet (retry).",
        "",
        "| method | path | summary | auth |",
        "|---|---|---|---|",
    ]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            auth = "token" if op.get("security") else ""
            out.append(f"| {method.upper()} | `{path}` | {op['summary']} | {auth} |")
    out += ["", "## Schemas", ""]
    for name, schema in sorted(doc["components"]["schemas"].items()):
        out += [f"### {name}", "", "```json", json.dumps(schema, indent=2), "```", ""]
    out += ["### JobSpec (request body of POST /v1/jobs)", "", "```json",
            json.dumps(doc["x-job-spec"], indent=2), "```", ""]  # fmt: skip
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render(openapi_document())
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print("docs/api.md is stale: run python scripts/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
