"""Where the CLI and workers find the stack.

A command must reach the same stack whichever directory it runs from, and must say so when
it found none instead of blaming a fixed address (issue 14). The stack directory is, in
order:

1. ``$PAXLINE_HOME``;
2. the nearest ``.paxline`` directory at or above the current directory (a clone where
   ``paxline up`` or ``make demo`` ran);
3. the per-user default: the stack the user last started with ``paxline up`` (recorded in
   ``$XDG_STATE_HOME/paxline/last-stack``, default ``~/.local/state/paxline``), else that
   directory itself, which is also where ``paxline up`` puts a stack when 1 and 2 give none.

Endpoints then come from flags, then the environment (``PAXLINE_COORDINATORS``,
``PAXLINE_API_TOKEN``, ``PAXLINE_KAFKA``, ``PAXLINE_REDIS``), then that stack's
``stack.json``, then localhost defaults; `Endpoints.origin` says which, so an error can
name it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack.stack import LocalStack

__all__ = ["Endpoints", "StackHome", "home", "locate", "remember", "resolve", "user_dir"]

DEFAULT_COORDINATORS = "http://127.0.0.1:8701,http://127.0.0.1:8702,http://127.0.0.1:8703"
_POINTER = "last-stack"


@dataclass(frozen=True)
class StackHome:
    """A stack directory and why it was chosen (``how`` reads well after "stack in ...")."""

    path: Path
    how: str
    exists: bool  # a `stack.json` is there: `paxline up` ran in it


@dataclass(frozen=True)
class Endpoints:
    coordinators: list[str]
    token: str
    kafka: str
    redis: str
    tls_ca: str = ""  # CA file for HTTPS coordinators (PAXLINE_TLS_CA); "": system trust
    #: where the endpoints came from, for error messages: "stack in ...", "defaults ...".
    origin: str = ""


def user_dir() -> Path:
    """The per-user state directory (XDG base directory spec)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "paxline"


def _has_stack(path: Path) -> bool:
    return (path / "stack.json").is_file()


def locate(cwd: Path | None = None) -> StackHome:
    """The stack directory by the rules in the module docstring (no I/O beyond stat)."""
    env = os.environ.get("PAXLINE_HOME")
    if env:
        path = Path(env).resolve()
        return StackHome(path, "$PAXLINE_HOME", _has_stack(path))
    here = (cwd or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / ".paxline"
        if candidate.is_dir():
            return StackHome(candidate, f"the nearest .paxline above {here}", _has_stack(candidate))
    udir = user_dir()
    try:
        last = Path((udir / _POINTER).read_text().strip())
    except OSError:
        last = None
    if last is not None and _has_stack(last):
        return StackHome(last, f"the stack last started with `paxline up` ({udir / _POINTER})",
                         True)  # fmt: skip
    return StackHome(udir, "the per-user default", _has_stack(udir))


def home() -> Path:
    return locate().path


def remember(path: Path) -> None:
    """Record `path` as the user's last started stack, so other directories find it."""
    udir = user_dir()
    udir.mkdir(parents=True, exist_ok=True)
    tmp = udir / f".{_POINTER}.tmp"
    tmp.write_text(str(path.resolve()) + "\n")
    tmp.replace(udir / _POINTER)


def not_found_hint(where: StackHome) -> str:
    """What to tell a user whose command found no stack (the addresses it tried are defaults)."""
    return (
        f"no paxline stack found (no $PAXLINE_HOME, no .paxline in {Path.cwd()} or above, "
        f"none recorded in {user_dir()}); start one with `paxline up` or set PAXLINE_HOME"
    )


def resolve(
    coordinators: str | None = None,
    token: str | None = None,
    kafka: str | None = None,
    redis: str | None = None,
    tls_ca: str | None = None,
) -> Endpoints:
    where = locate()
    info = LocalStack(where.path).info() if where.exists else None
    env = os.environ
    coords = coordinators or env.get("PAXLINE_COORDINATORS")
    explicit = bool(coords)
    if not coords:
        coords = ",".join(info.coordinators) if info else DEFAULT_COORDINATORS
    if info is not None:
        origin = f"stack in {where.path} ({where.how})"
    elif explicit or env.get("PAXLINE_KAFKA") or kafka:
        origin = "flags and environment"
    else:
        origin = not_found_hint(where)
    return Endpoints(
        coordinators=[c.strip() for c in coords.split(",") if c.strip()],
        token=token or env.get("PAXLINE_API_TOKEN") or (info.token if info else ""),
        kafka=kafka or env.get("PAXLINE_KAFKA") or (info.kafka if info else "127.0.0.1:9092"),
        redis=redis
        or env.get("PAXLINE_REDIS")
        or (info.redis if info else "redis://127.0.0.1:6379/0"),
        tls_ca=tls_ca or env.get("PAXLINE_TLS_CA", ""),
        origin=origin,
    )
