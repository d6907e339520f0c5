"""Loading a job by entrypoint (``path/to/file.py:attr`` or ``package.module:attr``).

Apart from :mod:`pipeline.job` because it imports user code (importlib, sys.path, files):
the job model and everything the pure executor imports stay free of that.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.job import Job

__all__ = ["JobLoadError", "load_job"]


class JobLoadError(PipelineError, LookupError):
    """An entrypoint (``path.py:attr`` or ``module:attr``) cannot be resolved to a Job."""


def load_job(ref: str, *, cwd: str | Path | None = None) -> Job:
    """Resolve ``path/to/file.py:attr`` (relative to ``cwd``) or ``package.module:attr``.

    A file inside a package under ``cwd`` (every directory up to ``cwd`` has
    ``__init__.py``) is imported under its dotted name, so both spellings give the very same
    Job object and the file's relative imports work.
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise JobLoadError(
            f"entrypoint must look like 'path.py:attr' or 'module:attr', got {ref!r}"
        )
    target, _, attr = ref.rpartition(":")
    if not target or not attr or not attr.isidentifier():
        raise JobLoadError(
            f"entrypoint must look like 'path.py:attr' or 'module:attr', got {ref!r}"
        )
    base = Path(cwd) if cwd is not None else Path.cwd()
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(base, target)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name is not None and target.startswith(exc.name):
                raise JobLoadError(
                    f"cannot import module {target!r}: no module named {exc.name!r}"
                ) from None
            raise JobLoadError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise JobLoadError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise JobLoadError(f"{target!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Job):
        raise JobLoadError(f"{ref!r} is a {type(obj).__name__}, not a paxline Job")
    return obj


def _import_file(base: Path, target: str) -> Any:
    path = (base / target).resolve()
    if not path.is_file():
        raise JobLoadError(f"job file not found: {target!r} (looked at {path})")
    root = base.resolve()
    dotted = _dotted_name(root, path)
    try:
        if dotted is not None:
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            module = importlib.import_module(dotted)
            origin = getattr(module, "__file__", None)
            if origin is not None and Path(origin).resolve() == path:
                return module
            # another module shadows the dotted name: fall back to loading the file itself
        name = "_paxline_job_" + re.sub(r"\W", "_", str(path))
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise JobLoadError(f"cannot load {target!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    except JobLoadError:
        raise
    except Exception as exc:
        raise JobLoadError(f"importing {target!r} failed: {type(exc).__name__}: {exc}") from exc


def _dotted_name(root: Path, path: Path) -> str | None:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    parts = rel.with_suffix("").parts
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return None
    directory = root
    for part in parts[:-1]:
        directory = directory / part
        if not (directory / "__init__.py").is_file():
            return None
    return ".".join(parts)
