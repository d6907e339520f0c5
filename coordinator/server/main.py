"""Run one coordinator node: the Paxos runtime and the HTTP API in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn

from coordinator.errors import CoordinatorError
from coordinator.server.api import build_app
from coordinator.server.identity import has_state, load_identity
from coordinator.server.runtime import IdentityError, NodeRuntime, ServerConfig
from coordinator.server.tls import TlsConfig, TlsError

__all__ = ["ConfigError", "NodeFailed", "parse_address", "parse_peers", "run", "serve"]

log = logging.getLogger(__name__)

_GRACEFUL_SHUTDOWN_SECONDS = 3


class ConfigError(CoordinatorError):
    """A command-line or environment setting is missing or malformed."""


class NodeFailed(CoordinatorError):
    """A part of the node that must run until shutdown stopped; the process exits non-zero."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} must look like HOST:PORT, got {text!r}")
    return host, int(port)


def parse_peers(text: str, bootstrap: bool = True) -> dict[int, tuple[str, int]]:
    """`1=host:port,2=host:port,3=host:port` -> {1: (host, port), ...}. Only a bootstrap
    (`--initial-cluster new`) needs the founding 1, 3 or 5 nodes; a node of an existing
    cluster (or joining one) takes its configuration from the replicated membership, and
    --peers need only list itself and nodes to reach it through."""
    peers: dict[int, tuple[str, int]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        ident, sep, addr = item.partition("=")
        if not sep or not ident.isdigit() or int(ident) < 1:
            raise ConfigError(f"--peers entry {item!r} must look like ID=HOST:PORT with ID >= 1")
        if int(ident) in peers:
            raise ConfigError(f"--peers lists node {ident} twice")
        peers[int(ident)] = parse_address(addr, f"--peers entry for node {ident}")
    if bootstrap and len(peers) not in (1, 3, 5):
        raise ConfigError(
            f"--peers must list 3 or 5 nodes (or 1 for a toy cluster), got {len(peers)}"
        )
    return peers


def config_from_env(
    node_id: int, peers: str, api: str, data_dir: Path, fsync: bool = True,
    initial_cluster: str = "existing", join: bool = False,
    tls_cert: str | None = None, tls_key: str | None = None, tls_ca: str | None = None,
) -> ServerConfig:  # fmt: skip
    """`tls_*` default to PAXLINE_TLS_CERT/KEY/CA; none of the three means plain HTTP and
    plain TCP peer links (authenticated by the HMAC alone)."""
    empty = load_identity(data_dir) is None and not has_state(data_dir)
    peer_map = parse_peers(peers, bootstrap=empty and not join)
    if node_id not in peer_map:
        raise ConfigError(f"--id {node_id} is not one of the --peers ({sorted(peer_map)})")
    secret = os.environ.get("PAXLINE_CLUSTER_SECRET", "")
    if len(secret) < 16:
        raise ConfigError(
            "PAXLINE_CLUSTER_SECRET must be set to the same secret (16+ characters) on every node"
        )
    token = os.environ.get("PAXLINE_API_TOKEN", "")
    if len(token) < 8:
        raise ConfigError("PAXLINE_API_TOKEN must be set (8+ characters) to protect mutations")
    if initial_cluster not in ("new", "existing"):
        raise ConfigError(f"--initial-cluster must be new or existing, got {initial_cluster!r}")
    env = os.environ
    try:
        tls = TlsConfig.from_settings(
            env.get("PAXLINE_TLS_CERT", "") if tls_cert is None else tls_cert,
            env.get("PAXLINE_TLS_KEY", "") if tls_key is None else tls_key,
            env.get("PAXLINE_TLS_CA", "") if tls_ca is None else tls_ca,
        )
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    if empty and initial_cluster != "new" and not join:
        raise ConfigError(
            f"data dir {data_dir} is empty: pass --initial-cluster new to bootstrap a new "
            "cluster, or --join to replace this node's lost disk in an existing one"
        )
    return ServerConfig(
        initial_cluster=initial_cluster,
        join=join and empty,
        node_id=node_id,
        peers=peer_map,
        api=parse_address(api, "--api"),
        data_dir=data_dir,
        secret=secret.encode(),
        api_token=token,
        advertise_api=os.environ.get("PAXLINE_ADVERTISE_API", ""),
        fsync=fsync,
        worker_session_timeout=float(os.environ.get("PAXLINE_WORKER_SESSION_TIMEOUT", "10")),
        inline_save_ms=float(os.environ.get("PAXLINE_INLINE_SAVE_MS", "1.0")),
        tls=tls,
    )


async def serve(cfg: ServerConfig) -> None:
    rt = NodeRuntime(cfg)
    app = build_app(rt)
    await rt.start()
    tls = cfg.tls
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=cfg.api[0], port=cfg.api[1], log_level="warning", access_log=False,
            lifespan="off",
            # Nothing reads the client's address (no access log), so X-Forwarded-For need
            # not be parsed on every request: 2.1% of the leader's CPU at 64 clients.
            proxy_headers=False,
            # HTTPS only: clients authenticate with the bearer token, not a certificate.
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            # Bounds how long SIGTERM waits for open connections. Over TLS, closing an idle
            # keep-alive connection waits for the client's close_notify, which a pooled
            # client (every worker's, every other node's forwarder) never sends: unbounded,
            # each stop took 15-20 s. Clients retry what a cut request did not finish.
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
    )  # fmt: skip
    # uvicorn captures SIGINT/SIGTERM while serving and re-raises them when it returns; the
    # loop handlers below make that re-raise harmless so the runtime closes cleanly.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: None)

    async def expiry() -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await app.state.expire_lapsed()
            except Exception:
                log.exception("worker-session expiry failed")

    expiry_task = asyncio.create_task(expiry())
    log.info(
        "node %d: peers on %s, API on %s:%d, data in %s",
        cfg.node_id, cfg.peers[cfg.node_id], *cfg.api, cfg.data_dir,
    )  # fmt: skip
    if tls is not None:  # paths only: nothing a key file holds reaches a log
        log.info("TLS: API over HTTPS, peer links over mutual TLS with HMAC on every frame; "
                 "certificate %s, CA %s", tls.cert, tls.ca)  # fmt: skip
    else:
        log.info("TLS off: API over plain HTTP, peer links authenticated by HMAC only")
    failed = rt.failed
    if failed is None:
        raise NodeFailed("the runtime did not start")
    serving = asyncio.create_task(server.serve())
    try:
        waits: set[asyncio.Future[Any]] = {serving, failed}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            server.should_exit = True
        await serving  # and re-raise whatever stopped uvicorn
    finally:
        expiry_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await expiry_task
        await app.state.forward_client.aclose()
        await rt.stop()
    if rt.refused is not None:
        raise ConfigError(rt.refused)
    if failed.done():
        # Exit non-zero so that a supervisor (compose's `restart:`, systemd) restarts the
        # node; its state is durable, so a restart is as safe as one after kill -9.
        raise NodeFailed(f"node {cfg.node_id} stopped: {failed.result()}")


class _IdleTlsShutdown(logging.Filter):
    """Hides uvicorn's "Cancel 0 running task(s), timeout graceful shutdown exceeded": with
    no task cut, the wait was only for idle TLS clients' close_notify (see `serve`), not an
    error. With tasks cut it still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().startswith("Cancel 0 running task"))


def run(cfg: ServerConfig) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s node{cfg.node_id} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("uvicorn.error").addFilter(_IdleTlsShutdown())
    # A follower forwards every request it gets to the leader through httpx, which logs each
    # one at INFO: at 1,000 workers that was ~1,000 lines a second, burying elections.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import uvloop  # a faster event loop where available
    except ImportError:
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(cfg))
    except (ConfigError, IdentityError) as exc:
        log.critical("%s", exc)  # bad configuration: one line, no restart will fix it
        raise SystemExit(2) from exc
    except NodeFailed as exc:
        log.critical("%s; exiting so that a supervisor restarts the node", exc)
        raise SystemExit(1) from exc
