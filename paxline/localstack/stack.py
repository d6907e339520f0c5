"""`paxline up` on one machine: Kafka (one broker or a KRaft cluster), Redis (AOF), 3
coordinators and N workers, run by the stack's supervisor (`supervisor.py`), with all state and
logs under one directory (default `.paxline/`).

What was started is recorded in `stack.json` there, and the supervisor's view of every
process in `supervisor/state.json`, so `paxline status` and `paxline down` work from any later
shell. The cluster secret and API token are generated once and kept in that file (mode 0600);
they are never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paxline.localstack import kafka, redis, redis_cluster, redis_sentinel, supervisor
from paxline.localstack.common import (
    ServiceError,
    free_port,
    process_alive,
    wait_until,
)
from paxline.localstack.coordinators import LocalCluster
from paxline.localstack.supervisor import ExitInfo, Program, describe_exit

__all__ = ["MAX_BROKERS", "LocalStack", "StackConfigError", "StackInfo", "StackOptions"]

Progress = Callable[[str], None]
_ROOT = str(Path(__file__).resolve().parents[2])
MAX_BROKERS = 5


class StackConfigError(ServiceError):
    """Options this stack cannot take; nothing was started or changed (the CLI: exit 2)."""


REDIS_MODES = ("single", "sentinel", "cluster")


@dataclass(frozen=True)
class StackOptions:
    """What `paxline up` was asked for. Each option is checked in `problems` (one line per
    problem, naming the flag), so a new option is a field and a check."""

    workers: int = 2
    brokers: int = 1
    redis: str = "single"  # single | sentinel | cluster (docs/architecture.md, sec. 4)

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.redis not in REDIS_MODES:
            out.append(f"--redis must be one of {', '.join(REDIS_MODES)}, got {self.redis!r}")
        if not 0 <= self.workers <= 64:
            out.append(f"--workers must be between 0 and 64, got {self.workers}")
        if not 1 <= self.brokers <= MAX_BROKERS:
            out.append(f"--brokers must be between 1 and {MAX_BROKERS}, got {self.brokers}")
        return out


@dataclass
class StackInfo:
    kafka: str
    redis: str
    coordinators: list[str]
    workers: dict[str, int]
    token: str
    home: Path
    brokers: int = 1

    def env(self) -> dict[str, str]:
        """Environment that points the CLI and workers at this stack."""
        return {
            "PAXLINE_KAFKA": self.kafka,
            "PAXLINE_REDIS": self.redis,
            "PAXLINE_COORDINATORS": ",".join(self.coordinators),
            "PAXLINE_API_TOKEN": self.token,
        }


class LocalStack:
    def __init__(self, home: Path) -> None:
        self.home = home.resolve()
        self.file = self.home / "stack.json"

    # ----------------------------------------------------------------------- persistence
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.file)

    def _cluster(self, data: dict[str, Any]) -> LocalCluster:
        ports = {int(i): (int(p[0]), int(p[1])) for i, p in data["coordinator_ports"].items()}
        return LocalCluster(
            self.home / "coordinators",
            size=len(ports),
            secret=data["secret"],
            token=data["token"],
            ports=ports,
            env={"PAXLINE_WORKER_SESSION_TIMEOUT": "10"},
        )

    def info(self) -> StackInfo | None:
        data = self._load()
        if not data:
            return None
        return StackInfo(
            kafka=data["kafka"],
            redis=data["redis"],
            coordinators=data["coordinators"],
            workers={k: int(v) for k, v in data.get("workers", {}).items()},
            brokers=int(data.get("brokers", 1)),
            token=data["token"],
            home=self.home,
        )

    # ---------------------------------------------------------------------------- up
    def up(self, options: StackOptions | None = None, progress: Progress = print) -> StackInfo:
        """Start the stack under its supervisor, or, when a supervisor already runs here,
        bring it to `options` (more or fewer workers) without touching what runs.

        Raises `StackConfigError` (nothing started or changed) for options this stack cannot
        take, `ServiceError` when a service does not come up (the stack is stopped again)."""
        opts = options or StackOptions()
        problems = opts.problems()
        if problems:
            raise StackConfigError(problems[0])
        data = self._load()
        if not data:
            data = {
                "secret": secrets.token_urlsafe(32),
                "token": secrets.token_urlsafe(24),
                "coordinator_ports": {str(i): [free_port(), free_port()] for i in (1, 2, 3)},
                "workers": {},
            }
        had = int(data.get("brokers", 1))
        if data.get("kafka") and had != opts.brokers and self._kafka_has_data(had):
            raise StackConfigError(
                f"the stack in {self.home} runs {_brokers(had)}, not {opts.brokers}; its topics "
                f"live there: use another stack directory (PAXLINE_HOME=DIR paxline up "
                f"--brokers {opts.brokers}) or remove {self.home / 'kafka'} after `paxline down`"
            )
        had_redis = str(data.get("redis_mode", "single")) if data.get("redis") else opts.redis
        if had_redis != opts.redis:
            raise StackConfigError(
                f"the stack in {self.home} runs --redis {had_redis}, not {opts.redis}; its state "
                f"lives there: use another stack directory (PAXLINE_HOME=DIR paxline up "
                f"--redis {opts.redis})"
            )
        sup = supervisor.supervisor_pid(self.home)
        if sup is not None:
            plan = self._read_plan()
            plan["programs"] = [p for p in plan["programs"] if p["group"] != "workers"]
            plan["programs"] += [asdict(w) for w in self._workers_plan(data, opts.workers)]
            supervisor.write_json(supervisor.plan_file(self.home), plan)
            os.kill(sup, signal.SIGHUP)
            progress(f"the stack's supervisor runs (pid {sup}); asked for {opts.workers} workers")
        else:
            self._stop_leftovers(progress)
            progress(f"preparing Apache Kafka (KRaft, {_brokers(opts.brokers)}) ...")
            programs = self._services_plan(data, opts)
            programs += self._workers_plan(data, opts.workers)
            data["brokers"] = opts.brokers
            self._save(data)
            supervisor.write_json(
                supervisor.plan_file(self.home), {"programs": [asdict(p) for p in programs]}
            )
            sup = self._spawn_supervisor()
            progress(f"started the supervisor (pid {sup}); it restarts whatever exits")
        try:
            self._wait_up(data, opts, progress)
        except ServiceError:
            self.down(progress=lambda _: None)
            raise
        final = self.info()
        assert final is not None
        return final

    def _kafka_has_data(self, brokers: int) -> bool:
        d = self.home / "kafka"
        meta = (
            [d / "logs" / "meta.properties"]
            if brokers == 1
            else list(d.glob("node*/logs/meta.properties"))
        )
        return any(m.exists() for m in meta)

    def _read_plan(self) -> dict[str, Any]:
        try:
            plan = json.loads(supervisor.plan_file(self.home).read_text())
            return plan if isinstance(plan, dict) else {"programs": []}
        except (OSError, ValueError):
            return {"programs": []}

    def _services_plan(self, data: dict[str, Any], opts: StackOptions) -> list[Program]:
        """Kafka, Redis and the coordinators as supervised programs (docs/architecture.md,
        section 7); records their addresses in `data`."""
        programs: list[Program] = []
        addresses: dict[str, str] = {}
        kdir = self.home / "kafka"
        if opts.brokers == 1:
            launches = [("kafka", kafka.prepare(kdir))]
        else:
            cluster = kafka.prepare_cluster(kdir, opts.brokers)
            launches = [(f"kafka-{i + 1}", x) for i, x in enumerate(cluster)]
        for name, x in launches:
            addresses[name] = f"127.0.0.1:{x.port}"
            programs.append(Program(
                name, x.argv, str(x.data_dir / "kafka.out"), "services",
                probe=["kafka", x.port, opts.brokers], pid_file=str(x.pid_file), grace=60.0,
            ))  # fmt: skip
        data["kafka"] = ",".join(f"127.0.0.1:{x.port}" for _, x in launches)
        data["kafka_version"] = launches[0][1].version
        if opts.redis == "single":
            argv, rport = redis.prepare(self.home / "redis")
            data["redis"] = addresses["redis"] = f"redis://127.0.0.1:{rport}/0"
            nodes = [("redis", argv, str(self.home / "redis" / "redis.log"), rport)]
        else:  # Sentinel or Cluster: several redis-server programs, one URL
            launcher = redis_sentinel if opts.redis == "sentinel" else redis_cluster
            data["redis"], nodes = launcher.prepare(self.home / f"redis-{opts.redis}")
            addresses.update((name, f"127.0.0.1:{port}") for name, _, _, port in nodes)
        data["redis_mode"], data["redis_ports"] = opts.redis, [n[3] for n in nodes]
        for name, argv, log, port in nodes:
            programs.append(Program(name, argv, log, "services", probe=["redis", port],
                                    grace=30.0))  # fmt: skip
        cl = self._cluster(data)
        data["coordinators"] = cl.endpoints
        for i, n in sorted(cl.nodes.items()):
            n.data_dir.mkdir(parents=True, exist_ok=True)
            addresses[f"coordinator-{i}"] = n.url
            programs.append(Program(
                f"coordinator-{i}", cl.command(i), str(n.log_path), "coordinators",
                env=cl.node_env(), probe=["tcp", n.api_port], grace=2.0,
            ))  # fmt: skip
        data["addresses"] = addresses
        return programs

    def _workers_plan(self, data: dict[str, Any], workers: int) -> list[Program]:
        info_env = {
            "PAXLINE_KAFKA": data["kafka"],
            "PAXLINE_REDIS": data["redis"],
            "PAXLINE_COORDINATORS": ",".join(data["coordinators"]),
            "PAXLINE_API_TOKEN": data["token"],
            "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        # A worker's first start waits for everything it talks to (it would only stall).
        services = [p["name"] for p in self._read_plan()["programs"]
                    if p["group"] in ("services", "coordinators")]  # fmt: skip
        if not services:
            services = [*_kafka_names(int(data.get("brokers", 1))), "redis",
                        "coordinator-1", "coordinator-2", "coordinator-3"]  # fmt: skip
        old = {p["name"]: p for p in self._read_plan()["programs"] if p["group"] == "workers"}
        out: list[Program] = []
        for n in range(1, workers + 1):
            name = f"worker-{n}"
            if name in old:  # unchanged: a running worker keeps its command and directory
                out.append(Program.from_json(old[name]))
                continue
            out.append(Program(
                name, [sys.executable, "-m", "paxline.cli", "worker", "run", f"--id={name}"],
                str(self.home / "logs" / f"{name}.log"), "workers", cwd=os.getcwd(),
                env=info_env, after=services, grace=3.0,
            ))  # fmt: skip
        data["workers"] = {p.name: 0 for p in out}
        self._save(data)
        return out

    def _spawn_supervisor(self) -> int:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # The local stack is plain HTTP: a PAXLINE_TLS_* of the caller's shell must not turn
        # its coordinators into a half-TLS cluster (as in LocalCluster.start_node).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAXLINE_TLS_")}
        env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
        with open(logs / "supervisor.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "paxline.localstack.supervisor", str(self.home)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=str(self.home),
            )  # fmt: skip
        wait_until(lambda: supervisor.supervisor_pid(self.home) == proc.pid
                   or proc.poll() is not None, 30, "the supervisor to start")  # fmt: skip
        if proc.poll() is not None:
            raise ServiceError(f"the supervisor exited at once; see {logs / 'supervisor.log'}")
        return proc.pid

    def _wait_up(self, data: dict[str, Any], opts: StackOptions, progress: Progress) -> None:
        """Wait, with progress lines, until Kafka lists every broker, Redis answers, the
        coordinators agree on a leader and every worker runs. A service whose process exits
        twice meanwhile fails `up` with how it ended and where its log is."""
        plan = {p["name"]: p for p in self._read_plan()["programs"]}

        def failing(group: str) -> None:
            st = supervisor.read_state(self.home)
            if supervisor.supervisor_pid(self.home) is None:
                raise ServiceError(
                    f"the supervisor stopped; see {self.home / 'logs' / 'supervisor.log'}"
                )
            for name, p in st.get("programs", {}).items():
                e = p.get("last_exit")
                if p.get("group") == group and e and p.get("restarts", 0) >= 1 and not p["running"]:
                    raise ServiceError(
                        f"{name} {describe_exit(ExitInfo(**e))}; see {plan[name]['log']}"
                    )

        def waiting(group: str, condition: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                failing(group)
                return condition()

            return check

        brokers = opts.brokers if sum(1 for n in plan if n.startswith("kafka")) > 1 else 1
        ports = [int(a.rsplit(":", 1)[1]) for a in data["kafka"].split(",")]
        progress("starting Apache Kafka (KRaft) ...")
        wait_until(waiting("services", lambda: all(
            kafka.metadata_brokers("127.0.0.1", p) >= brokers for p in ports)),
            300, f"kafka on {data['kafka']} to list {_brokers(brokers)}")  # fmt: skip
        progress(f"  kafka {data.get('kafka_version', '')} on {data['kafka']}")
        progress(f"  {_brokers(brokers)}, replication {min(3, brokers)}, "
                 f"min.insync.replicas {min(2, brokers)}")  # fmt: skip
        rports = [int(p) for p in data.get("redis_ports", [])] or [
            int(data["redis"].rsplit(":", 1)[1].split("/")[0])
        ]
        mode = str(data.get("redis_mode", "single"))
        progress(f"starting Redis ({mode}, AOF on) ...")
        wait_until(waiting("services", lambda: all(map(redis.ping, rports))), 60,
                   "redis to answer PING")  # fmt: skip
        if mode == "cluster":
            redis_cluster.create_once(self.home / "redis-cluster")
        progress(f"  redis ({mode}) at {data['redis']}")
        progress("starting 3 coordinators ...")
        cluster = self._cluster(data)
        failing("coordinators")
        leader = cluster.wait_for_leader(timeout=90)
        progress(f"  leader is node {leader}; API on {', '.join(cluster.endpoints)}")
        progress(f"starting {opts.workers} workers ...")
        names = [f"worker-{n}" for n in range(1, opts.workers + 1)]

        def workers_run() -> bool:
            progs = supervisor.read_state(self.home).get("programs", {})
            return all(progs.get(w, {}).get("running") for w in names) and not any(
                p.get("group") == "workers" and n not in names for n, p in progs.items()
            )

        wait_until(waiting("workers", workers_run), 60, "the workers to start")
        progress(f"  workers: {', '.join(names)}")

    def _stop_leftovers(self, progress: Progress) -> None:
        """Before a new supervisor starts: stop what an earlier one (or an earlier `paxline
        up` without one) left running, so nothing runs twice on the same ports."""
        data = self._load()
        pids = [(p["group"], int(p["pid"]), str(p.get("argv0", "")))
                for p in supervisor.read_state(self.home).get("programs", {}).values()
                if p.get("pid")]  # fmt: skip
        left = [(g, pid) for g, pid, a in pids if supervisor.program_alive(pid, a)]
        legacy = [("workers", int(p)) for p in data.get("workers", {}).values() if int(p) > 0]
        legacy += [("coordinators", int(p)) for p in data.get("coordinator_pids", {}).values()]
        left += [(g, p) for g, p in legacy if process_alive(p)]
        for group in supervisor.STOP_ORDER:
            group_pids = [pid for g, pid in left if g == group]
            if group_pids:
                _terminate(group_pids, 10.0)
                progress(f"stopped {len(group_pids)} {group} left over from an earlier run")
        data.pop("coordinator_pids", None)
        if data:
            self._save(data)
        redis.stop(self.home / "redis")
        kafka.stop(self.home / "kafka")
        kafka.stop_cluster(self.home / "kafka")

    # -------------------------------------------------------------------------- down
    def down(self, progress: Progress = print) -> None:
        """Stop everything: the supervisor stops workers first (their final commit and
        goodbye need the coordinators, or each waits out its timeouts), then coordinators,
        then Kafka and Redis side by side, and exits; anything left (a supervisor that was
        SIGKILLed, a stack from before supervision) is stopped here in the same order."""
        data = self._load()
        if not data:
            progress("nothing is running here")
            return
        sup = supervisor.supervisor_pid(self.home)
        if sup is not None:
            os.kill(sup, signal.SIGTERM)
            try:
                wait_until(lambda: not process_alive(sup), 120, "the supervisor to stop",
                           interval=0.05)  # fmt: skip
            except ServiceError:
                os.kill(sup, signal.SIGKILL)
            for line in supervisor.read_state(self.home).get("shutdown", []):
                progress(line)
        else:
            progress("no supervisor runs here; stopping what is left")
        self._stop_leftovers(progress)
        data = self._load()
        data["workers"] = {}
        self._save(data)

    # ------------------------------------------------------------------------ status
    def process_table(self) -> list[dict[str, Any]]:
        """One row per process: service, address, up, pid, restarts, last exit (how and
        when it last ended, "killed by SIGKILL at 12:03:04"), and what it does now."""
        data = self._load()
        rows: list[dict[str, Any]] = []
        if not data:
            return rows
        st = supervisor.read_state(self.home)
        if not st.get("programs"):
            return self._legacy_table(data)
        sup = supervisor.supervisor_pid(self.home)
        rows.append({"service": "supervisor", "address": f"pid {sup or st.get('pid')}",
                     "up": sup is not None, "pid": sup, "restarts": 0, "last_exit": None,
                     "state": "running" if sup else "stopped"})  # fmt: skip
        addresses = data.get("addresses", {})
        now = time.time()
        for name, p in st["programs"].items():
            pid = p.get("pid")
            alive = bool(sup and p.get("running") and pid
                         and supervisor.program_alive(int(pid), p.get("argv0", "")))  # fmt: skip
            e = p.get("last_exit")
            if alive:
                state = "running"
            elif sup is None:
                state = "stopped"
            elif p.get("next_start") and p["next_start"] > now:
                state = f"restarting in {p['next_start'] - now:.0f}s"
            else:
                state = "starting"
            rows.append({
                "service": name,
                "address": addresses.get(name) or (f"pid {pid}" if pid else "-"),
                "up": alive, "pid": pid if alive else None,
                "restarts": int(p.get("restarts", 0)),
                "last_exit": describe_exit(ExitInfo(**e)) if e else None,
                "state": state,
            })  # fmt: skip
        return rows

    def _legacy_table(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """A stack directory without supervisor state (made before supervision, or never
        started): what its pid files say."""
        rows: list[dict[str, Any]] = []
        k = kafka.status(self.home / "kafka")
        rows.append({"service": "kafka", "address": data.get("kafka"), "up": k is not None})
        r = redis.status(self.home / "redis")
        rows.append({"service": "redis", "address": data.get("redis"), "up": r is not None})
        for i, pid in sorted(data.get("coordinator_pids", {}).items()):
            url = data["coordinators"][int(i) - 1]
            rows.append({"service": f"coordinator-{i}", "address": url, "up": process_alive(pid)})
        for w, pid in sorted(data.get("workers", {}).items()):
            rows.append({"service": w, "address": f"pid {pid}", "up": process_alive(int(pid))})
        return rows


def _brokers(n: int) -> str:
    return "1 broker" if n == 1 else f"{n} brokers"


def _kafka_names(n: int) -> list[str]:
    return ["kafka"] if n == 1 else [f"kafka-{i}" for i in range(1, n + 1)]


def _terminate(pids: list[int], grace: float) -> int:
    """SIGTERM every pid, wait up to `grace` seconds for all, SIGKILL the rest; returns how
    many had to be killed."""
    alive = [p for p in pids if process_alive(p)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not any(process_alive(p) for p in alive), grace, "processes to exit",
                   interval=0.05)  # fmt: skip
        return 0
    except ServiceError:
        stuck = [p for p in alive if process_alive(p)]
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(stuck)
