"""httpx, imported without its command-line client.

httpx's package imports its CLI (``httpx._main``: rich, pygments, click) whenever those
happen to be installed, and typer installs them. That cost 0.5-0.8 s at every start of a
worker, a coordinator and every ``paxline`` command (``python -X importtime``), most of the
time to first output (docs/benchmarks-pipeline.md). Marking ``httpx._main`` absent before
the first import makes httpx define its stub ``main`` instead; nothing here uses the CLI.
"""

from __future__ import annotations

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx

__all__ = ["httpx"]
