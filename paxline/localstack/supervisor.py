"""The local stack's supervisor: one small detached process that starts every program of a
`paxline up` stack (Kafka, Redis, coordinators, workers), restarts whatever exits, and stops
them all on SIGTERM (docs/architecture.md, section 7).

Why a process of its own: only a process's parent learns how it ended (exit code or signal),
and `paxline up` returns to the shell at once, so the parent must be something that stays.
The supervisor is that parent. It reads what to run from `supervisor/plan.json` in the stack
directory (written by `paxline up`, re-read on SIGHUP) and writes what happened to
`supervisor/state.json` (read by `paxline status`). Restarts follow compose's
`restart: unless-stopped`: every exit is restarted, after a delay that doubles from 1 s up to
30 s while the program keeps failing and falls back to 1 s once it has run for 10 s, so a
program that exits at once on bad configuration costs a start every 30 s, not a spin.

Children get SIGTERM if the supervisor dies (Linux `PR_SET_PDEATHSIG`): a SIGKILLed
supervisor leaves no orphan behind.

Stdlib only, like the rest of this package.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paxline.localstack.common import port_open

__all__ = [
    "Backoff",
    "ExitInfo",
    "Program",
    "Schedule",
    "describe_exit",
    "exit_info",
    "main",
    "plan_file",
    "read_state",
    "state_file",
    "supervisor_pid",
]

# Stop order: workers first (their goodbye needs the coordinators), then coordinators, then
# the data services side by side (nothing uses them any more).
STOP_ORDER = ("workers", "coordinators", "services")
POLL = 0.1


# ----------------------------------------------------------------------------- pure policy
@dataclass(frozen=True)
class Backoff:
    """Restart delays: `first`, doubling per consecutive quick failure, at most `cap`; a run
    of `stable_after` seconds or more counts as healthy and starts the doubling again."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    stable_after: float = 10.0

    def delay(self, failures: int) -> float:
        """Delay before the restart that follows the `failures`-th quick exit in a row."""
        return min(self.cap, self.first * self.factor ** max(0, failures - 1))


@dataclass(frozen=True)
class ExitInfo:
    """How a run of a program ended: `code` for a normal exit, `signal` (a name such as
    "SIGKILL") when a signal ended it; `at` is wall-clock time, `line` the last line it
    logged (the one-line reason a program gives on bad configuration)."""

    at: float
    ran_for: float
    code: int | None = None
    signal: str | None = None
    line: str = ""


def exit_info(returncode: int, at: float, ran_for: float, line: str = "") -> ExitInfo:
    """From `Popen.returncode` (negative: killed by that signal)."""
    if returncode < 0:  # what it logged last says nothing about a signal from outside
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return ExitInfo(at, ran_for, signal=name)
    return ExitInfo(at, ran_for, code=returncode, line=line)


def describe_exit(e: ExitInfo) -> str:
    """ "killed by SIGKILL at 12:03:04" / "exited with code 1 at 12:03:04: <its last line>"."""
    clock = time.strftime("%H:%M:%S", time.localtime(e.at))
    how = f"killed by {e.signal}" if e.signal else f"exited with code {e.code}"
    return f"{how} at {clock}" + (f": {e.line}" if e.line else "")


@dataclass
class Schedule:
    """One program's supervision as a pure state machine: events in (`started`, `exited`),
    the next start time out (`next_start`); time is passed in, never read."""

    backoff: Backoff = field(default_factory=Backoff)
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    failures: int = 0  # quick exits in a row
    next_start: float = 0.0
    last_exit: ExitInfo | None = None
    ready: bool = False  # its readiness probe answered once since the supervisor started

    def due(self, now: float) -> bool:
        return self.pid is None and now >= self.next_start

    def started(self, now: float, pid: int) -> None:
        if self.last_exit is not None:
            self.restarts += 1
        self.pid, self.started_at = pid, now

    def exited(self, now: float, returncode: int, line: str = "") -> ExitInfo:
        ran = now - (self.started_at if self.started_at is not None else now)
        self.last_exit = exit_info(returncode, now, ran, line)
        self.failures = 1 if ran >= self.backoff.stable_after else self.failures + 1
        self.next_start = now + self.backoff.delay(self.failures)
        self.pid = self.started_at = None
        return self.last_exit


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Program:
    """One program of the stack as `paxline up` planned it.

    `env` is added to the supervisor's own environment (inherited from `paxline up`);
    `after` names programs whose probe must have answered before this one first starts
    (compose's `depends_on: service_healthy`); `probe` is ["kafka", port, brokers],
    ["redis", port] or ["tcp", port]; `pid_file` is kept current for the launchers'
    own status commands; `group` places it in the stop order; `grace` is how long SIGTERM
    may take before SIGKILL."""

    name: str
    argv: list[str]
    log: str
    group: str
    cwd: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    probe: list[Any] | None = None
    pid_file: str | None = None
    grace: float = 5.0

    @staticmethod
    def from_json(d: dict[str, Any]) -> Program:
        return Program(**d)


def sup_dir(home: Path) -> Path:
    return home / "supervisor"


def plan_file(home: Path) -> Path:
    return sup_dir(home) / "plan.json"


def state_file(home: Path) -> Path:
    return sup_dir(home) / "state.json"


def pid_file(home: Path) -> Path:
    return sup_dir(home) / "supervisor.pid"


def write_json(path: Path, data: object) -> None:
    """Atomically, mode 0600 (the plan holds the cluster secret and the API token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    tmp.replace(path)


def read_state(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_file(home).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def supervisor_pid(home: Path) -> int | None:
    """The pid of the supervisor running for `home`, if one runs (checked by its command
    line, so a recycled pid is never taken for it)."""
    try:
        pid = int(pid_file(home).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _cmdline_has(pid, ["paxline.localstack.supervisor", str(home)]) else None


def _cmdline_has(pid: int, parts: list[str]) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        return False
    return all(p in args for p in parts)


def program_alive(pid: int, argv0: str) -> bool:
    """A pid recorded for a program still runs that program (not a recycled pid). Matched on
    the program's file name anywhere in its command line: redis-server rewrites its own."""
    name = os.path.basename(argv0)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        return False
    return bool(name) and name in cmdline


# --------------------------------------------------------------------------- the process
def _last_line(log: Path, limit: int = 160) -> str:
    """The last non-empty line of a log: why a program that exits at once exited."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            tail = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else ""


def _pdeathsig() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux only)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def _probe(p: list[Any]) -> bool:
    from paxline.localstack import kafka, redis

    kind = p[0]
    if kind == "kafka":
        return kafka.metadata_brokers("127.0.0.1", int(p[1]), timeout=0.5) >= int(p[2])
    if kind == "redis":
        return redis.ping(int(p[1]), timeout=0.5)
    return port_open(int(p[1]), timeout=0.3)


@dataclass
class _Supervised:
    program: Program
    schedule: Schedule
    proc: subprocess.Popen[bytes] | None = None


class Supervisor:
    def __init__(self, home: Path, backoff: Backoff | None = None) -> None:
        self.home = home
        self.backoff = backoff or Backoff()
        self.programs: dict[str, _Supervised] = {}
        self.stopping = False
        self.reload = True
        self.started_at = time.time()
        self.shutdown: list[str] = []

    # A signal only sets a flag; the loop acts on it between polls.
    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def _on_hup(self, *_: object) -> None:
        self.reload = True

    def _load_plan(self) -> None:
        """Reconcile with the plan: start what is new, stop what was removed, and keep
        running programs as they are (a changed command line applies at their next start)."""
        try:
            raw = json.loads(plan_file(self.home).read_text())
        except (OSError, ValueError) as exc:
            print(f"supervisor: cannot read the plan: {exc}", flush=True)
            return
        wanted = [Program.from_json(d) for d in raw.get("programs", [])]
        names = {p.name for p in wanted}
        for name in [n for n in self.programs if n not in names]:
            s = self.programs.pop(name)
            if s.proc is not None:
                _stop([s.proc], s.program.grace)
            print(f"supervisor: removed {name}", flush=True)
        merged: dict[str, _Supervised] = {}
        for p in wanted:
            old = self.programs.get(p.name)
            if old is None:
                merged[p.name] = _Supervised(p, Schedule(self.backoff))
            else:
                old.program = p
                merged[p.name] = old
        self.programs = merged

    def _spawn(self, s: _Supervised, now: float) -> None:
        p = s.program
        Path(p.log).parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **p.env}
        with open(p.log, "ab") as log:
            log.write(f"--- supervisor: starting {p.name} at {time.ctime(now)}\n".encode())
            log.flush()
            try:
                s.proc = subprocess.Popen(
                    p.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, cwd=p.cwd, start_new_session=True,
                    preexec_fn=_pdeathsig if sys.platform == "linux" else None,
                )  # fmt: skip
            except OSError as exc:  # a missing binary: an exit like any other, backed off
                log.write(f"cannot start {p.argv[0]}: {exc}\n".encode())
                s.schedule.started(now, -1)
                s.schedule.exited(now, 127, f"cannot start {p.argv[0]}: {exc}")
                return
        s.schedule.started(now, s.proc.pid)
        if p.pid_file:
            with contextlib.suppress(OSError):
                Path(p.pid_file).write_text(str(s.proc.pid))

    def _step(self, now: float) -> bool:
        changed = False
        for s in self.programs.values():
            if s.proc is not None and s.proc.poll() is not None:
                e = s.schedule.exited(now, s.proc.returncode, _last_line(Path(s.program.log)))
                print(f"supervisor: {s.program.name} {describe_exit(e)}; restarting in "
                      f"{s.schedule.next_start - now:.0f}s", flush=True)  # fmt: skip
                s.proc = None
                changed = True
        for s in self.programs.values():
            deps_ready = all(
                self.programs[d].schedule.ready for d in s.program.after if d in self.programs
            )
            if s.schedule.due(now) and deps_ready:
                self._spawn(s, now)
                changed = True
            probe = s.program.probe
            if s.proc is not None and not s.schedule.ready and (probe is None or _probe(probe)):
                s.schedule.ready = True
                changed = True
        return changed

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, s in self.programs.items():
            sch = s.schedule
            out[name] = {
                "group": s.program.group,
                "pid": s.proc.pid if s.proc is not None else None,
                "running": s.proc is not None,
                "ready": sch.ready,
                "started_at": sch.started_at,
                "restarts": sch.restarts,
                "next_start": None if s.proc is not None else sch.next_start,
                "last_exit": asdict(sch.last_exit) if sch.last_exit else None,
                "argv0": s.program.argv[0] if s.program.argv else "",
            }
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "running": not self.stopping,
            "programs": out,
            "shutdown": self.shutdown,
        }

    def _save(self) -> None:
        write_json(state_file(self.home), self.state())

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        pid_file(self.home).parent.mkdir(parents=True, exist_ok=True)
        pid_file(self.home).write_text(str(os.getpid()))
        print(f"supervisor: pid {os.getpid()} for {self.home}", flush=True)
        last_save = 0.0
        while not self.stopping:
            if self.reload:
                self.reload = False
                self._load_plan()
            now = time.time()
            if self._step(now) or now - last_save > 1.0:
                self._save()
                last_save = now
            time.sleep(POLL)
        self.stop_all()
        self._save()
        pid_file(self.home).unlink(missing_ok=True)
        print("supervisor: stopped", flush=True)

    def stop_all(self) -> None:
        """Stop group by group in STOP_ORDER; the lines go to state.json for `paxline down`."""
        self._save()
        for group in STOP_ORDER:
            members = [s for s in self.programs.values() if s.program.group == group]
            procs = [s.proc for s in members if s.proc is not None]
            if not members:
                continue
            t0 = time.monotonic()
            grace = max(s.program.grace for s in members)
            killed = _stop(procs, grace)
            for s in members:
                if s.proc is not None:
                    s.schedule.exited(time.time(), s.proc.returncode or 0)
                    s.proc = None
                    if s.program.pid_file:
                        Path(s.program.pid_file).unlink(missing_ok=True)
            names = {"services": "kafka and redis"}.get(group, f"{len(members)} {group}")
            note = f", {killed} killed after {grace:.0f}s" if killed else ""
            self.shutdown.append(f"stopped {names} ({time.monotonic() - t0:.1f}s{note})")
            print(f"supervisor: {self.shutdown[-1]}", flush=True)
            self._save()


def _stop(procs: list[subprocess.Popen[bytes]], grace: float) -> int:
    """SIGTERM all, wait up to `grace` for all, SIGKILL the rest; returns how many were killed."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    stuck = [p for p in procs if p.poll() is None]
    for p in stuck:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
    for p in stuck:
        p.wait(30)
    return len(stuck)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m paxline.localstack.supervisor STACK_DIR", file=sys.stderr)
        return 2
    Supervisor(Path(args[0])).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
