"""docker-compose.yml is valid (checked by `docker-compose config`, Debian package) and every
paxline service runs a command the `paxline` CLI accepts - the same commands as the local
stack, so a typo in the compose file fails here instead of in a restart loop."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from paxline.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: scripts/install-deps installs it"
    done = subprocess.run(
        [exe, "--env-file", ".env.example", "config"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load(done.stdout)
    assert isinstance(data, dict)
    return data


def parse_invocation(args: list[str]) -> list[str]:
    """Parse `paxline ARGS` exactly as the CLI would, without running it; returns the
    sub-command path. Raises the CLI's usage error for a bad invocation."""
    cmd: Any = get_command(app)
    ctx = cmd.make_context("paxline", list(args))
    path: list[str] = []
    while hasattr(cmd, "resolve_command"):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return path


def test_compose_file_is_valid_and_complete() -> None:
    services = _config()["services"]
    assert {"kafka", "redis", "coordinator-1", "coordinator-2", "coordinator-3", "worker"} <= set(
        services
    )
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert "container_name" not in services["worker"], "workers must scale with --scale"
    for name, svc in services.items():
        if name == "cli":  # one-off commands (`docker compose run --rm cli ...`), never `up`
            assert svc["profiles"] == ["cli"] and svc["image"] == services["worker"]["image"]
            continue
        assert svc.get("restart") == "unless-stopped", name
        assert "healthcheck" in svc or name == "worker", name


def test_images_come_from_variables_with_the_public_images_as_defaults() -> None:
    services = _config()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"] == "redis:7"
    assert services["worker"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim"}
    text = (ROOT / "docker-compose.yml").read_text()
    for var in ("PAXLINE_IMAGE", "PAXLINE_PYTHON_IMAGE", "PAXLINE_KAFKA_IMAGE",
                "PAXLINE_REDIS_IMAGE"):  # fmt: skip
        assert "${" + var + ":-" in text, var
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}" in dockerfile


@pytest.mark.parametrize("service", ["coordinator-1", "coordinator-2", "coordinator-3", "worker"])
def test_each_paxline_service_runs_a_valid_paxline_command(service: str) -> None:
    svc = _config()["services"][service]
    assert svc["image"] == "paxline:latest"
    path = parse_invocation(svc["command"])
    assert path in (["coordinator", "run"], ["worker", "run"])
    env = svc["environment"]
    assert env["PAXLINE_CLUSTER_SECRET"] and env["PAXLINE_API_TOKEN"]


@pytest.mark.parametrize(
    "args",
    [
        ["coordinator", "run", "--id", "1"],  # missing --peers and --data-dir
        ["coordinator", "run", "--id", "one", "--peers", "1=a:1", "--data-dir", "/d"],
        ["worker", "run", "--capacity", "many"],
        ["workers", "run"],
    ],
)
def test_the_parser_rejects_bad_invocations(args: list[str]) -> None:
    with pytest.raises(Exception) as info:
        parse_invocation(args)
    # The CLI's own usage errors (missing option, bad value, unknown command), nothing else.
    assert any(c.__name__ == "UsageError" for c in type(info.value).__mro__), info.value
