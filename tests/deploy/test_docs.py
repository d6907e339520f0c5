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
