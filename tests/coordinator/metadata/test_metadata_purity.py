"""The metadata machine and the assignor are pure: they import nothing that does I/O.

docs/architecture.md, sec. 1 requires this so that every replica (and the simulator) computes the
same state from the same log. An allow-list is stricter than a deny-list: a new import has
to be judged before it is added here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PURE_MODULES = [
    "coordinator/metadata.py",
    "coordinator/assignor.py",
    "coordinator/commands.py",
    "coordinator/protocol.py",
]
ALLOWED = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "heapq",
    "itertools",
    "math",
    "msgspec",
    "operator",
    "re",
    "typing",
    "coordinator.assignor",
    "coordinator.commands",
    "coordinator.errors",
    "coordinator.protocol",
}
FORBIDDEN_CALLS = {"__import__", "open", "eval", "exec", "input", "print", "hash", "id"}


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports"
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", PURE_MODULES)
def test_imports_only_pure_modules(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    for name in imported_modules(tree):
        allowed = name in ALLOWED or name.split(".")[0] in ALLOWED - {"coordinator"}
        assert allowed, f"{path} imports {name!r}, which is not on the pure allow-list"


@pytest.mark.parametrize("path", PURE_MODULES)
def test_calls_no_io_or_nondeterministic_builtins(path: str) -> None:
    """``hash``/``id`` vary between processes (hash randomisation, addresses)."""
    tree = ast.parse((ROOT / path).read_text(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path} calls {node.func.id}()"


def test_the_check_catches_a_forbidden_import() -> None:
    tree = ast.parse("import os\nfrom time import monotonic\nimport asyncio.tasks\n")
    bad = [n for n in imported_modules(tree) if n.split(".")[0] not in ALLOWED]
    assert bad == ["os", "time", "asyncio.tasks"]
