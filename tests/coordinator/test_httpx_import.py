"""What starting a worker, a coordinator or a `paxline` command imports: httpx without its
command-line client (coordinator/_httpx.py), whose rich/pygments/click imports cost 0.3 s of
CPU at every start (docs/benchmarks-pipeline.md, first output)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["paxline.cli.main", "pipeline.worker", "coordinator.client"])
def test_starting_does_not_import_the_httpx_cli(module: str) -> None:
    code = (
        f"import sys, {module}, httpx; "
        "print(sorted(m for m in ('httpx._main', 'rich', 'pygments') if sys.modules.get(m)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
