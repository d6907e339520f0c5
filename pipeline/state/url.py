"""The state-store URL: which Redis deployment a worker writes to, and how durable a batch
must be before it counts as applied (docs/architecture.md, sec. 4, "Redis deployments").

Forms (one string, so it travels through `--redis`, PAXLINE_REDIS and the stack file as the
single-Redis URL always did):

- `redis://[:password@]host:port[/db]` (also `rediss://`, `unix://`): one Redis.
- `redis+sentinel://[:password@]host:port[,host:port...]/master[/db]`: a primary with
  replicas watched by Sentinel; the store asks the sentinels who the primary is and follows a
  failover. The password is the data nodes' (sentinels are assumed open on the local network).
- `redis+cluster://[:password@]host:port[,host:port...]`: a Redis Cluster (any nodes of it;
  the client learns the rest). Keys are tagged per partition, not per job (docs/architecture.md,
  "Redis deployments"); `wait_replicas` is refused (WAIT covers one connection, a cluster
  client spreads a partition's commands over the slot owner only, and its replicas follow
  asynchronously; the changelog restore covers a promotion that lost writes).

Query parameters on either form (removed before the URL reaches redis-py):

- `wait_replicas=N` (default 0): after every write script, `WAIT N timeout`; fewer than N
  acknowledgements is a transient fault (the batch is not counted as applied, the partition
  stalls and is taken over again), so a failover to that replica cannot lose what Kafka
  committed.
- `wait_timeout_ms=T` (default 1000, at most 4000: below the client's 5 s socket timeout).

Pure: no redis import, so the CLI can check a URL before starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline.urls import shown

__all__ = ["MAX_WAIT_TIMEOUT_MS", "RedisTarget", "RedisUrlError", "parse_redis_url"]

MAX_WAIT_TIMEOUT_MS = 4000
_OURS = ("wait_replicas", "wait_timeout_ms")


class RedisUrlError(ValueError):
    """The state-store URL is malformed (bad configuration: the worker exits, naming it)."""


@dataclass(frozen=True)
class RedisTarget:
    """A parsed state-store URL. `url` is the plain redis-py URL (single Redis); for Sentinel,
    `sentinels` and `master` say whom to ask, `db`/`password` apply to the data nodes."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    cluster: tuple[tuple[str, int], ...] = ()
    db: int = 0
    password: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def is_cluster(self) -> bool:
        return bool(self.cluster)


def _int_param(params: dict[str, str], name: str, default: int, url: str) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RedisUrlError(f"{name}={raw!r} in {shown(url)} is not a whole number") from None
    if value < 0:
        raise RedisUrlError(f"{name}={value} in {shown(url)} must not be negative")
    return value


def parse_redis_url(url: str) -> RedisTarget:
    """Parse `url` (forms in the module docstring); raises RedisUrlError naming the problem."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise RedisUrlError(f"malformed Redis URL {shown(url)}: {exc}") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params = {k: v for k, v in pairs if k in _OURS}
    rest = [(k, v) for k, v in pairs if k not in _OURS]
    replicas = _int_param(params, "wait_replicas", 0, url)
    timeout = _int_param(params, "wait_timeout_ms", 1000, url)
    if timeout > MAX_WAIT_TIMEOUT_MS or (replicas and timeout == 0):
        raise RedisUrlError(
            f"wait_timeout_ms={timeout} in {shown(url)} must be 1..{MAX_WAIT_TIMEOUT_MS} "
            "(below the 5 s socket timeout; 0 would block forever)"
        )
    if parts.scheme in ("redis", "rediss", "unix"):
        plain = urlunsplit(parts._replace(query=urlencode(rest)))
        return RedisTarget(plain, wait_replicas=replicas, wait_timeout_ms=timeout)
    if parts.scheme not in ("redis+sentinel", "redis+cluster"):
        raise RedisUrlError(
            f"Redis URL {shown(url)} must start with redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    if rest:
        raise RedisUrlError(f"unknown parameter {rest[0][0]!r} in {shown(url)}")
    netloc = parts.netloc
    password: str | None = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = auth.split(":", 1)[1] if ":" in auth else auth
    sentinels: list[tuple[str, int]] = []
    for hostport in filter(None, netloc.split(",")):
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise RedisUrlError(f"sentinel {hostport!r} in {shown(url)} must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme == "redis+cluster":
        if not sentinels or path:
            raise RedisUrlError(
                f"Redis URL {shown(url)} must look like redis+cluster://host:port[,...]"
            )
        if replicas:
            raise RedisUrlError(f"wait_replicas in {shown(url)}: not supported with Redis Cluster")
        return RedisTarget(url, cluster=tuple(sentinels), password=password or None)
    if not sentinels or not path or len(path) > 2:
        raise RedisUrlError(
            f"Redis URL {shown(url)} must look like redis+sentinel://host:port[,host:port]/master[/db]"
        )
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise RedisUrlError(f"database {path[1]!r} in {shown(url)} is not a number")
        db = int(path[1])
    return RedisTarget(url, tuple(sentinels), path[0], db=db, password=password or None,
                       wait_replicas=replicas, wait_timeout_ms=timeout)  # fmt: skip
