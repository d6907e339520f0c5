"""The executor package, and everything it imports, is pure: no I/O, no clocks, no randomness.

docs/architecture.md (sec. 1) requires it; exactly-once relies on it, because a replayed batch
must give byte-identical outputs. The check starts from every module of ``pipeline/executor/``
and follows each ``pipeline`` import it meets (TYPE_CHECKING ones too, and the packages Python
runs on the way), so a new module or a new dependency is covered without editing this file. An
allow-list is stricter than a deny-list."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "pipeline" / "executor"
ALLOWED = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "itertools",
    "math",
    "re",
    "typing",
    "msgspec",
    "orjson",
}
# Pure submodules of packages that also hold I/O (urllib.request is not allowed).
ALLOWED_SUBMODULES = {"urllib.parse"}
# A ``pipeline`` module is allowed when it passes the same checks: the walk reaches it.
FORBIDDEN_MODULES = {"confluent_kafka", "redis", "socket", "asyncio", "time", "os", "threading",
                     "random", "subprocess", "pickle", "importlib"}  # fmt: skip
FORBIDDEN_CALLS = {"__import__", "open", "eval", "exec", "input", "print", "hash", "id"}


def module_file(name: str) -> Path | None:
    """The source file of an in-repo ``pipeline`` module, or None for anything else."""
    if name.split(".")[0] not in ("pipeline", "coordinator"):
        return None  # coordinator: the executor reaches coordinator.protocol (limits)
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports"
            module = node.module or ""
            names.append(module)
            # `from pipeline import eos` imports the module pipeline.eos
            names.extend(
                f"{module}.{a.name}" for a in node.names if module_file(f"{module}.{a.name}")
            )
    return names


def parse(name: str) -> ast.Module:
    path = module_file(name)
    assert path is not None, name
    return ast.parse(path.read_text(), filename=str(path.relative_to(ROOT)))


def reachable(start: Iterable[str]) -> list[str]:
    """Every ``pipeline`` module that importing ``start`` runs (the packages above included)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imported_modules(parse(name)))
    return sorted(seen)


def impure_imports(name: str) -> list[str]:
    bad = []
    for imported in imported_modules(parse(name)):
        top = imported.split(".")[0]
        if top in ("pipeline", "coordinator"):
            continue  # in-repo modules are checked in their own right (see `reachable`)
        if imported in ALLOWED_SUBMODULES:
            continue
        if top in FORBIDDEN_MODULES or top not in ALLOWED:
            bad.append(imported)
    return bad


PACKAGE_MODULES = sorted(
    "pipeline.executor" if p.stem == "__init__" else f"pipeline.executor.{p.stem}"
    for p in PACKAGE.glob("*.py")
)
PURE_MODULES = reachable(PACKAGE_MODULES)


def test_the_walk_covers_the_package_and_what_it_imports() -> None:
    assert set(PACKAGE_MODULES) <= set(PURE_MODULES)
    assert {"pipeline.executor.records", "pipeline.executor.plan"} <= set(PACKAGE_MODULES)
    assert {"pipeline", "pipeline.codecs", "pipeline.errors", "pipeline.spec"} <= set(PURE_MODULES)
    assert "pipeline.worker" not in PURE_MODULES


@pytest.mark.parametrize("name", PURE_MODULES)
def test_imports_only_pure_modules(name: str) -> None:
    assert impure_imports(name) == [], f"{name} imports modules not on the pure allow-list"


@pytest.mark.parametrize("name", PURE_MODULES)
def test_calls_no_io_or_nondeterministic_builtins(name: str) -> None:
    """``hash``/``id`` vary between processes (hash randomisation, addresses)."""
    for node in ast.walk(parse(name)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{name} calls {node.func.id}()"


def test_the_check_catches_a_forbidden_import() -> None:
    tree = ast.parse("import os\nfrom time import monotonic\nimport confluent_kafka.admin\n")
    bad = [n for n in imported_modules(tree) if n.split(".")[0] in FORBIDDEN_MODULES]
    assert bad == ["os", "time", "confluent_kafka.admin"]


def test_the_walk_catches_an_indirect_io_import() -> None:
    """The worker reaches redis through pipeline.state.redis and confluent_kafka through
    pipeline.kafka.clients, never directly."""
    found = {n: impure_imports(n) for n in reachable(["pipeline.worker"])}
    assert "redis" not in found["pipeline.worker"]
    assert "redis" in found["pipeline.state.redis"]
    assert any(i.startswith("confluent_kafka") for i in found.get("pipeline.kafka.clients", []))
