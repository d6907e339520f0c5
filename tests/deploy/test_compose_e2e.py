"""The compose deployment, really run (marker `compose`; `make compose-test`).

In a copy of the repository (what a fresh clone holds), with a container engine (a Docker
engine that answers, or podman started by `scripts/container-engine start`), the test runs
the README's "Deploying with docker compose" commands, literally: the local images
(`scripts/images`, the podman note), `docker compose up`, submit word count, feed it. Then it
checks the Redis view against a plain-Python count, kills the coordinator leader's container
and one worker's container as soon as a second, larger feed reaches the view (the printed
count says how much of it was done), checks that the job finishes exact and that both
containers come back by their restart policy, that `paxline up --compose` works against the
running deployment, and that `docker compose down -v` leaves no container, volume, network
or host process of the project behind.

How a container is killed: SIGKILL to its main process, sent from the host, so that for the
engine the container crashed. `docker kill` sends the same signal but through the engine, and
both Docker ("the restart policy is disabled until the next time the container is started",
docker-kill(1)) and podman (the container counts as stopped by the user) then leave it
stopped: a restart policy is for crashes, not for an operator's kill. This needs the
container's processes in the host's pid namespace (rootful podman here; Docker on Linux).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from paxline.localstack.compose import engine_available, ping_socket

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.compose, pytest.mark.timeout(1800)]

VIEW_KEY = "paxline:{wordcount}:view:wordcount"
FEED_REPEAT = 100
SECOND_FEED_REPEAT = 1500
# The README's commands, in the order the test runs them (a test below finds each of them,
# verbatim, in the README's compose section). `docker compose` is run as whichever compose
# CLI is installed (the Docker plugin, or Debian's docker-compose).
SETUP = "cp .env.example .env"
ENGINE = 'eval "$(scripts/container-engine start)"'
IMAGES = "scripts/images"
UP = "docker compose up -d --scale worker=2"
SUBMIT = "docker compose run --rm cli submit examples/wordcount.py:job --wait"
FEED = (
    "docker compose run --rm --entrypoint python cli examples/produce.py text "
    f"examples/data/sample.txt --repeat {FEED_REPEAT}"
)
VIEW = f"docker compose exec -T redis redis-cli --raw hgetall '{VIEW_KEY}'"
OFFSETS = "docker compose run --rm cli offsets wordcount"
DOWN = "docker compose down -v"
README_COMMANDS = [SETUP, ENGINE, IMAGES, UP, SUBMIT, FEED, VIEW, OFFSETS, DOWN]


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    """Poll `check` until true; fail with `what` after `timeout` seconds. Returns the wait."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)  # polling interval of a deadline-bounded wait
    return time.monotonic() - t0


def expected_counts(repeat: int) -> Counter[str]:
    """Word count by plain Python: what the view must hold after `repeat` feeds."""
    lines = (ROOT / "examples/data/sample.txt").read_text().splitlines()
    once = Counter(w.lower() for line in lines for w in line.split() if w.isalpha())
    return Counter({w: n * repeat for w, n in once.items()})


@dataclass
class Deployment:
    dir: Path
    project: str
    env: dict[str, str]
    compose: list[str]
    cli: str  # docker, or podman (the same commands) where there is no docker CLI
    timings: dict[str, float]

    def run(self, command: str, timeout: float = 900, check: bool = True) -> str:
        """Run one README line in the deployment's directory (shell syntax as written)."""
        args = shlex.split(command)
        if args[:2] == ["docker", "compose"]:
            args = [*self.compose, *args[2:]]
        done = subprocess.run(
            args, cwd=self.dir, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            pytest.fail(f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                        f"{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    def start(self, command: str) -> subprocess.Popen[str]:
        """Start one README line in the background (the same translation as `run`)."""
        args = shlex.split(command)
        if args[:2] == ["docker", "compose"]:
            args = [*self.compose, *args[2:]]
        return subprocess.Popen(args, cwd=self.dir, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def engine(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([self.cli, *args], env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        if check and done.returncode != 0:
            pytest.fail(f"{self.cli} {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def containers(self, service: str | None = None, all_: bool = False) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = self.engine("ps", "-q", *(["-a"] if all_ else []), *filters)
        return sorted(out.split())

    def inspect(self, container: str) -> dict[str, Any]:
        data = json.loads(self.engine("inspect", container))
        assert isinstance(data, list) and data
        return dict(data[0])

    def crash(self, container: str) -> None:
        """SIGKILL the container's main process from the host (see the module docstring)."""
        pid = int(self.inspect(container)["State"]["Pid"])
        assert pid > 0, f"{container} has no process to kill"
        os.kill(pid, signal.SIGKILL)

    def view(self) -> Counter[str]:
        out = self.run(VIEW, timeout=60, check=False).splitlines()
        return Counter({out[i]: int(out[i + 1]) for i in range(0, len(out) - 1, 2)})


def _cluster(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/cluster", timeout=2) as r:
            data = json.loads(r.read())
            return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _leader() -> int | None:
    """The node every answering coordinator names as leader, when they agree."""
    views = [v for v in (_cluster(p) for p in (8701, 8702, 8703)) if v is not None]
    leaders = {v.get("leader_id") for v in views}
    if len(views) == 3 and len(leaders) == 1 and None not in leaders:
        return int(next(iter(leaders)))  # type: ignore[arg-type]
    return None


def _copy_repository(dest: Path) -> None:
    """What a fresh clone holds: tracked files and new files not ignored, as they are now."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    for rel in filter(None, done.stdout.decode().split("\0")):
        src = ROOT / rel
        if not src.exists():  # deleted in the working tree
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def _compose_cli(env: dict[str, str]) -> list[str]:
    """`docker compose` where the plugin is installed, else Debian's docker-compose."""
    docker = shutil.which("docker")
    if docker:
        done = subprocess.run([docker, "compose", "version"], capture_output=True, env=env,
                              check=False)  # fmt: skip
        if done.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "no compose CLI: scripts/install-deps installs docker-compose"
    return [legacy]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    for port in (8701, 8702, 8703):
        assert _cluster(port) is None, f"port {port} is taken: stop the other paxline first"
    timings: dict[str, float] = {}
    work = tmp_path_factory.mktemp("compose") / "paxline"
    _copy_repository(work)
    env = dict(os.environ)
    started_engine = False
    if not engine_available():
        out = subprocess.run(
            ["scripts/container-engine", "start"], cwd=work, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        started_engine = "already answers" not in out.stderr  # stop only what we started
        # ENGINE: the line's effect, the exports it prints.
        for name, value in re.findall(r"(\w+)=(\S+)", out.stdout):
            env[name] = value
    host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert ping_socket(host.removeprefix("unix://")), f"no container engine at {host}"
    podman = "CONTAINERS_CONF" in env or shutil.which("docker") is None
    cli = shutil.which("docker") or shutil.which("podman")
    assert cli, "neither docker nor podman is installed (scripts/install-deps --engine)"
    compose = _compose_cli(env)
    # Compose names the project after the directory ("paxline"): give it a unique name, so
    # that the test never touches another deployment on the machine.
    project = f"paxlinetest{os.getpid()}"
    env["COMPOSE_PROJECT_NAME"] = project
    d = Deployment(work, project, env, compose, cli, timings)
    try:
        d.run(SETUP)
        if podman:
            t0 = time.monotonic()
            d.run(IMAGES, timeout=1800)
            timings["images"] = time.monotonic() - t0
        t0 = time.monotonic()
        d.run(UP, timeout=600)
        timings["up"] = time.monotonic() - t0
        yield d
    finally:
        # Whatever happened, leave nothing running (the test of `down -v` is below).
        d.run(DOWN, timeout=300, check=False)
        if started_engine:
            subprocess.run(["scripts/container-engine", "stop"], cwd=work, check=False,
                           capture_output=True)  # fmt: skip
        print("compose timings (s):", {k: round(v, 1) for k, v in timings.items()})


def test_the_tests_commands_are_the_readmes() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Deploying with docker compose", 1)[1].split("\n## ", 1)[0]
    for command in README_COMMANDS:
        assert command in section, f"README's compose section lacks: {command}"


def test_word_count_survives_killing_the_leader_and_a_worker(deployment: Deployment) -> None:
    d = deployment
    t0 = time.monotonic()
    d.run(SUBMIT, timeout=300)
    d.run(FEED, timeout=300)
    first = expected_counts(FEED_REPEAT)
    d.timings["first feed exact"] = wait_for(
        "the Redis view to equal the plain-Python count of the first feed",
        lambda: d.view() == first, timeout=300,
    ) + (time.monotonic() - t0)  # fmt: skip

    leader = _leader()
    assert leader is not None, "the three coordinators do not agree on a leader"
    victims = {
        "leader": d.containers(f"coordinator-{leader}"),
        "worker": d.containers("worker")[:1],
    }
    assert len(victims["leader"]) == 1 and len(victims["worker"]) == 1, victims
    before = {k: d.inspect(v[0]) for k, v in victims.items()}

    # A second, larger feed; the kills land as soon as the view starts to move with it.
    feed = d.start(FEED.replace(f"--repeat {FEED_REPEAT}", f"--repeat {SECOND_FEED_REPEAT}"))
    first_total = sum(first.values())
    wait_for("the second feed to reach the view",
             lambda: sum(d.view().values()) > first_total, timeout=180, every=0.2)  # fmt: skip
    for v in victims.values():
        d.crash(v[0])
    t_kill = time.monotonic()
    in_flight = sum(d.view().values())
    total = expected_counts(FEED_REPEAT + SECOND_FEED_REPEAT)
    # Not asserted: on an idle machine the workers may count the whole feed between two
    # polls of the view (~1 s); the kills then hit a job that has checkpoints to replay.
    print(f"kills landed with {in_flight} of {sum(total.values())} words counted")
    out, err = feed.communicate(timeout=300)
    assert feed.returncode == 0, f"the second feed failed: {out}\n{err}"

    def restarted(kind: str) -> bool:
        now = d.inspect(victims[kind][0])
        state = now["State"]
        return bool(
            state.get("Running")
            and state.get("StartedAt") != before[kind]["State"].get("StartedAt")
            and now.get("RestartCount", 0) > before[kind].get("RestartCount", 0)
        )

    d.timings["killed back"] = wait_for(
        "the killed containers to be restarted by their restart policy",
        lambda: restarted("leader") and restarted("worker"), timeout=180,
    )  # fmt: skip
    d.timings["exact after kills"] = wait_for(
        "the Redis view to equal the plain-Python count of both feeds",
        lambda: d.view() == total, timeout=420,
    ) + (time.monotonic() - t_kill - d.timings["killed back"])  # fmt: skip
    assert wait_for("a leader again", lambda: _leader() is not None, timeout=60) >= 0

    # Every partition's agreed offset reaches its end (checkpoints go on an interval).
    def caught_up() -> bool:
        rows = json.loads(d.run(OFFSETS + " --json", timeout=120))
        return bool(rows) and all(r["lag"] == 0 and r["owner"] for r in rows)

    wait_for("every agreed offset to reach its partition's end", caught_up, 120, every=2)
    # And the view stayed exact (no late duplicate applied after the check above).
    assert d.view() == total


def test_paxline_up_compose_works_against_the_engine(deployment: Deployment) -> None:
    d = deployment
    paxline = ROOT / ".venv/bin/paxline"
    t0 = time.monotonic()
    out = d.run(f"{paxline} up --compose --workers 2", timeout=900)
    d.timings["paxline up --compose (running)"] = time.monotonic() - t0
    assert "paxline is up (docker compose)" in out, out
    assert len(d.containers("worker")) == 2


def test_compose_down_leaves_nothing_running(deployment: Deployment) -> None:
    d = deployment
    assert d.containers(all_=True), "the deployment is not running before `down -v`"
    d.run(DOWN, timeout=300)
    assert d.containers(all_=True) == []
    volumes = d.engine("volume", "ls", "-q", "--filter",
                       f"label=com.docker.compose.project={d.project}").split()  # fmt: skip
    assert volumes == []
    networks = [n for n in d.engine("network", "ls", "--format", "{{.Name}}").split()
                if n.startswith(d.project + "_")]  # fmt: skip
    assert networks == []
    # Nor any process of the engine's for it on this host (podman's conmon keeps an exec
    # session's exit code for exit_command_delay, 10 s in scripts/container-engine).
    wait_for("no host process naming the project", lambda: not _processes_naming(d.project), 60)


def _processes_naming(project: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"{project}_".encode() in cmdline:
            found.append(int(proc.name))
    return found
