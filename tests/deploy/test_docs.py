"""The API reference in docs/api.md is generated from the OpenAPI document and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_api_md_matches_the_openapi_document() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gen_api_docs.py", "--check"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_rendered_reference_does_not_depend_on_how_a_library_dedents_docstrings() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from gen_api_docs import render
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def doc(description: str) -> dict[str, object]:
        schema = {"title": "JobSpec", "description": description}
        return {"paths": {}, "components": {"schemas": {"JobSpec": schema}}, "x-job-spec": schema}

    as_msgspec_022 = doc("What Paxos stores.\n\n    ``sink`` is opaque;\n    JSON-like.")
    as_msgspec_023 = doc("What Paxos stores.\n\n``sink`` is opaque;\nJSON-like.")
    assert render(as_msgspec_022) == render(as_msgspec_023)
    assert "``sink`` is opaque;\\nJSON-like." in render(as_msgspec_022)
