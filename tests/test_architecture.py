"""The package contract holds, and would catch a back-edge; no module imports itself through
others (docs/architecture.md, "Layers").

The contract is declarative (`[tool.importlinter]` in pyproject.toml, checked by
import-linter); these tests run it as CI does, plant a forbidden import in a copy of the
tree to show that it fails, and look for import cycles between files, which import-linter
does not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("coordinator", "pipeline", "paxline")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def copy_of_the_tree(dest: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        # the Paxos core reaching the server (what the old purity test let through)
        ("coordinator/paxos/node.py", "import coordinator.server.runtime",
         "The Paxos core imports nothing else of the project"),
        # the consensus side reaching into the data plane
        ("coordinator/server/api/jobs.py", "import pipeline.worker",
         "The consensus side never imports the data plane or the shell"),
        # a pure core reaching a clock through another module
        ("pipeline/executor/records.py", "import pipeline.metrics",
         "Pure cores do no I/O, read no clock and draw no randomness, transitively"),
        # the commit protocol reaching a clock (or the worker's I/O) through another module
        ("pipeline/commit/protocol.py", "import pipeline.checkpoint",
         "Pure cores do no I/O, read no clock and draw no randomness, transitively"),
        # redis outside the state package
        ("pipeline/worker.py", "import redis",
         "Only pipeline.state imports redis"),
    ],
)  # fmt: skip
def test_a_planted_back_edge_breaks_the_contract(
    tmp_path: Path, module: str, planted: str, broken: str
) -> None:
    tree = copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{broken} BROKEN" in " ".join(done.stdout.split())


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the file import graph
    (TYPE_CHECKING imports included: a cycle hidden behind them is still a cycle)."""
    graph = grimp.build_graph(*PACKAGES)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(m: str) -> None:  # Tarjan's algorithm
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in edges.get(m, []):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles() == []
