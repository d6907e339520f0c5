"""What every `paxline` command shares: the time budget, failures as one line, tables.

The operator contract (README, "CLI reference"; issue 14): a command whose service is down
answers within `--timeout` seconds (3 by default) with one line naming the service and the
address it tried, exit 1; bad input exits 2 with what to fix; nothing prints a traceback
unless `--debug` is given. The budget counts from process start (`paxline.cli.STARTED`),
because interpreter start-up and imports are part of what the operator waits for.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from paxline.cli import STARTED

if TYPE_CHECKING:
    from rich.table import Table

    from coordinator.client import CoordinatorClient
    from paxline.settings import Endpoints

__all__ = [
    "DEBUG",
    "DEFAULT_TIMEOUT",
    "TIMEOUT",
    "Failure",
    "budget",
    "coordinator_client",
    "fail",
    "print_table",
    "reaching",
    "remaining",
    "run_guarded",
]

DEFAULT_TIMEOUT = 3.0
# Kept back from the budget for printing the answer and exiting.
_RESERVE = 0.6

TIMEOUT = typer.Option(
    None,
    "--timeout",
    help="Seconds to wait for a service that does not answer (env PAXLINE_TIMEOUT; "
    f"default {DEFAULT_TIMEOUT:.0f}).",
    show_default=False,
)
DEBUG = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors.")


@dataclass
class _State:
    timeout: float | None = None
    debug: bool = False
    # Said on stderr after a command that worked without finding a stack: it reached
    # whatever answers on the default addresses, and the operator should know that.
    note: str = ""


STATE = _State()


class Failure(Exception):
    """A command's failure as the operator sees it: one line and an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise Failure(message, code)


def budget(timeout: float | None = None, debug: bool = False) -> None:
    """Record a command's own `--timeout`/`--debug` (they override the root options)."""
    if timeout is not None:
        if timeout <= 0:
            fail(f"--timeout must be > 0, got {timeout}", 2)
        STATE.timeout = timeout
    STATE.debug = STATE.debug or debug


def timeout() -> float:
    if STATE.timeout is not None:
        return STATE.timeout
    env = os.environ.get("PAXLINE_TIMEOUT", "")
    try:
        value = float(env) if env else DEFAULT_TIMEOUT
    except ValueError:
        fail(f"PAXLINE_TIMEOUT must be a number of seconds, got {env!r}", 2)
    if value <= 0:
        fail(f"PAXLINE_TIMEOUT must be > 0, got {env!r}", 2)
    return value


def remaining() -> float:
    """Seconds left of the budget for waiting on services (never below a short attempt)."""
    return max(0.2, STARTED + timeout() - _RESERVE - time.monotonic())


def debug_enabled() -> bool:
    return STATE.debug or os.environ.get("PAXLINE_DEBUG", "") not in ("", "0")


def coordinator_client(ep: Endpoints) -> CoordinatorClient:
    from coordinator.client import CoordinatorClient

    if ep.origin.startswith("no paxline stack found"):
        STATE.note = f"{ep.origin}; used {', '.join(ep.coordinators)}"
    left = remaining()
    return CoordinatorClient(
        ep.coordinators,
        ep.token or None,
        timeout=left,
        request_timeout=min(left, 2.0),
        ca=ep.tls_ca or None,
    )


def describe_unavailable(exc: BaseException, ep: Endpoints | None) -> str:
    """One line for a service that did not answer: which, where, and where that came from."""
    from coordinator.client import CoordinatorUnavailable
    from pipeline.kafka import BrokerUnreachable

    origin = f"; addresses from {ep.origin}" if ep is not None and ep.origin else ""
    if isinstance(exc, CoordinatorUnavailable):
        where = ", ".join(ep.coordinators) if ep is not None else "the coordinators"
        return f"coordinators at {where} did not answer within {timeout():.1f}s{origin}"
    assert isinstance(exc, BrokerUnreachable)
    return f"{exc}{origin}"


def print_table(table: Table) -> None:
    """Print a table without cutting anything: topic, job and worker names are what an
    operator copies into the next command, and Rich would shorten them to "paxline.wor…" to
    fit 80 columns (or any pipe, where it assumes 80). Every cell keeps its full text; a
    table too wide for the terminal drops its frame, and if that is not enough it is printed
    as wide as it needs (the terminal wraps the line rather than losing characters)."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement

    for column in table.columns:
        column.no_wrap = True
    console = Console()

    def needed() -> int:
        return Measurement.get(console, console.options.update_width(10_000), table).maximum

    if needed() > console.width:
        table.box = box.SIMPLE_HEAD
        table.show_edge = False
        table.pad_edge = False
    width = needed()
    if width > console.width:
        console = Console(width=width)
    console.print(table)


@contextmanager
def reaching(ep: Endpoints) -> Iterator[None]:
    """Around code that talks to the stack: a service that does not answer becomes one line
    naming it, the addresses tried and where they came from; exit 1."""
    from coordinator.client import CoordinatorTLSError, CoordinatorUnavailable
    from pipeline.kafka import BrokerUnreachable

    try:
        yield
    except CoordinatorTLSError as exc:
        # Configuration, not an outage: one line and the configuration exit code.
        if debug_enabled():
            raise
        raise Failure(str(exc), 2) from exc
    except (CoordinatorUnavailable, BrokerUnreachable) as exc:
        if debug_enabled():
            raise
        raise Failure(describe_unavailable(exc, ep)) from exc


def _usage_error(exc: Exception, kinds: set[str]) -> NoReturn:
    """A bad flag, value or command: one line naming it and the help to read, exit 2 (not
    click's usage block); no arguments at all: the help."""
    ctx = getattr(exc, "ctx", None)
    code = int(getattr(exc, "exit_code", 2))
    if "NoArgsIsHelpError" in kinds and ctx is not None:
        typer.echo(ctx.get_help())
        sys.exit(code)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    if "UsageError" in kinds:
        names: list[str] = []
        while ctx is not None and ctx.parent is not None:  # the root is `python -m ...`
            names.append(str(ctx.info_name))
            ctx = ctx.parent
        where = " ".join(["paxline", *reversed(names)])
        message += f" (see `{where} --help`)"
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def run_guarded(app: Any) -> None:
    """Run the typer app: a `Failure` is its one line; anything unexpected is one line too,
    with the traceback only under --debug (or PAXLINE_DEBUG=1)."""
    try:
        try:
            code = app(standalone_mode=False)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except Exception as exc:
            # Typer vendors click; its usage errors are recognised by their class names.
            kinds = {c.__name__ for c in type(exc).__mro__}
            if "ClickException" not in kinds:
                raise
            _usage_error(exc, kinds)
        finally:
            note, STATE.note = STATE.note, ""
        if isinstance(code, int) and code:
            sys.exit(code)
        if note:
            typer.echo(f"note: {note}", err=True)
    except SystemExit as exc:
        if note and not exc.code:
            typer.echo(f"note: {note}", err=True)
        raise
    except Failure as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.code)
    except Exception as exc:
        if debug_enabled():
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {first} (run with --debug for details)",
            err=True,
        )
        sys.exit(1)
