"""Where the CLI and workers find the stack: flags, then environment, then `paxline up`'s
record in `$PAXLINE_HOME/stack.json` (default `.paxline`), then localhost defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack.stack import LocalStack

__all__ = ["Endpoints", "home", "resolve"]

DEFAULT_COORDINATORS = "http://127.0.0.1:8701,http://127.0.0.1:8702,http://127.0.0.1:8703"


@dataclass(frozen=True)
class Endpoints:
    coordinators: list[str]
    token: str
    kafka: str
    redis: str
    tls_ca: str = ""  # CA file for HTTPS coordinators (PAXLINE_TLS_CA); "": system trust


def home() -> Path:
    return Path(os.environ.get("PAXLINE_HOME", ".paxline"))


def resolve(
    coordinators: str | None = None,
    token: str | None = None,
    kafka: str | None = None,
    redis: str | None = None,
    tls_ca: str | None = None,
) -> Endpoints:
    info = LocalStack(home()).info()
    env = os.environ
    coords = coordinators or env.get("PAXLINE_COORDINATORS")
    if not coords:
        coords = ",".join(info.coordinators) if info else DEFAULT_COORDINATORS
    return Endpoints(
        coordinators=[c.strip() for c in coords.split(",") if c.strip()],
        token=token or env.get("PAXLINE_API_TOKEN") or (info.token if info else ""),
        kafka=kafka or env.get("PAXLINE_KAFKA") or (info.kafka if info else "127.0.0.1:9092"),
        redis=redis
        or env.get("PAXLINE_REDIS")
        or (info.redis if info else "redis://127.0.0.1:6379/0"),
        tls_ca=tls_ca or env.get("PAXLINE_TLS_CA", ""),
    )
