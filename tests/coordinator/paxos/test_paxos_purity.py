"""The core must stay sans-I/O: time enters as tick(), randomness as an injected object."""

from __future__ import annotations

import ast
from pathlib import Path

import coordinator.paxos

FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "os",
    "threading",
    "random",
    "subprocess",
    "select",
    "selectors",
    "multiprocessing",
    "io",
    "pathlib",
    "shutil",
    "signal",
    "datetime",
    "secrets",
    "uuid",
    "logging",
    "http",
    "urllib",
    "ssl",
    "sys",
}

PACKAGE = Path(coordinator.paxos.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.add("__import__")
    return names


def test_core_modules_import_no_io_time_or_randomness() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 8
    offenders = {f.name: sorted(imported_modules(f) & (FORBIDDEN | {"__import__"})) for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_imports_only_stdlib_and_itself() -> None:
    allowed_roots = {
        "__future__",
        "coordinator",
        "base64",
        "binascii",
        "collections",
        "dataclasses",
        "enum",
        "json",
        "types",
        "typing",
    }
    for f in sorted(PACKAGE.glob("*.py")):
        extra = imported_modules(f) - allowed_roots
        assert not extra, f"{f.name} imports {sorted(extra)}"
