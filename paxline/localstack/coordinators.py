"""Start, kill and restart a local coordinator cluster as real processes on 127.0.0.1.

Used by the integration tests, the benchmarks and `paxline up`: each node is the same
`paxline coordinator run` command a deployment runs, with its own data directory and log.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.server.tls import TlsConfig
from paxline.localstack.common import ServiceError, free_port, wait_until

__all__ = ["LocalCluster", "NodeProcess"]


@dataclass
class NodeProcess:
    node_id: int
    peer_port: int
    api_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    # Certificate, key and CA for an HTTPS API and mutual-TLS peer links; None: plain. Read
    # at each start, so a test can restart a node with other certificates.
    tls: TlsConfig | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.api_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    def __init__(
        self,
        base_dir: Path,
        size: int = 3,
        secret: str = "paxline-local-cluster-secret",
        token: str = "paxline-local-token",
        fsync: bool = True,
        env: dict[str, str] | None = None,
        ports: dict[int, tuple[int, int]] | None = None,
        tls: dict[int, TlsConfig] | None = None,
    ) -> None:
        """`ports` maps node id -> (peer port, API port); free ports are chosen if omitted.
        `tls` maps node id -> its certificate, key and CA (every node, or none)."""
        self.base_dir = base_dir.resolve()
        self.secret = secret
        self.token = token
        self.fsync = fsync
        self.env = dict(env or {})
        self.nodes: dict[int, NodeProcess] = {}
        self.retired: dict[int, NodeProcess] = {}
        for i in range(1, size + 1):
            d = self.base_dir / f"node{i}"
            peer, api = (ports or {}).get(i) or (free_port(), free_port())
            self.nodes[i] = NodeProcess(
                i, peer, api, d, d / "coordinator.log", tls=(tls or {}).get(i)
            )

    def add_node(self) -> int:
        """Start one more node, with a new id and an empty data directory, with `--join`: it
        learns the cluster from its peers' hellos once the members link to it (after
        `POST /v1/cluster/members` chose it) and votes once it has caught up."""
        node_id = max([*self.nodes, *self.retired]) + 1
        d = self.base_dir / f"node{node_id}"
        tls = next(iter(self.nodes.values())).tls
        self.nodes[node_id] = NodeProcess(
            node_id, free_port(), free_port(), d, d / "coordinator.log", tls=tls
        )
        self.start_node(node_id, join=True)
        return node_id

    def retire(self, node_id: int, sig: int = signal.SIGTERM) -> None:
        """Stop a node (removed from the membership, or dead for good: SIGKILL) and forget
        it; its directory stays."""
        self.kill(node_id, sig)
        self.retired[node_id] = self.nodes.pop(node_id)

    def join_peers(self, node_id: int) -> str:
        """--peers of a node started with --join: itself and the running nodes (it waits for
        a hello from every node listed, so a dead one must not be)."""
        live = [i for i, n in sorted(self.nodes.items()) if i == node_id or n.alive()]
        return ",".join(f"{i}=127.0.0.1:{self.nodes[i].peer_port}" for i in live)

    @property
    def peers(self) -> str:
        return ",".join(f"{i}=127.0.0.1:{n.peer_port}" for i, n in sorted(self.nodes.items()))

    @property
    def endpoints(self) -> list[str]:
        return [n.url for _, n in sorted(self.nodes.items())]

    def command(self, node_id: int, join: bool = False) -> list[str]:
        n = self.nodes[node_id]
        cmd = [
            sys.executable, "-m", "paxline.cli", "coordinator", "run",
            # `--opt=value`: a value (a data directory, say) that begins with "-" must not
            # read as an option (issue 21).
            f"--id={node_id}", f"--peers={self.join_peers(node_id) if join else self.peers}",
            f"--api=127.0.0.1:{n.api_port}", f"--data-dir={n.data_dir}",
        ]  # fmt: skip
        if not self.fsync:
            cmd.append("--no-fsync")
        if n.tls is not None:
            cmd += [f"--tls-cert={n.tls.cert}", f"--tls-key={n.tls.key}", f"--tls-ca={n.tls.ca}"]
        # `new` only bootstraps when every node's directory is fresh; a node whose disk was
        # wiped later is refused (see README "Replacing a disk") unless started with join.
        cmd += ["--join"] if join else ["--initial-cluster", "new"]
        return cmd

    def start(self, timeout: float = 30.0) -> int:
        for node_id in self.nodes:
            self.start_node(node_id)
        return self.wait_for_leader(timeout)

    def start_node(self, node_id: int, join: bool = False) -> None:
        n = self.nodes[node_id]
        if n.alive():
            return
        n.data_dir.mkdir(parents=True, exist_ok=True)
        # TLS comes from `n.tls` only: a PAXLINE_TLS_* in the caller's environment must not
        # turn a plain test cluster into a half-TLS one.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PAXLINE_TLS_")}
        env = {**inherited, **self.node_env()}
        with open(n.log_path, "ab") as log:
            n.proc = subprocess.Popen(
                self.command(node_id, join), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip
        n.starts += 1

    def node_env(self) -> dict[str, str]:
        """What a node's environment adds to the inherited one: the cluster secret, the API
        token, this cluster's settings and the project on PYTHONPATH."""
        root = str(Path(__file__).resolve().parents[2])
        return {
            **self.env,
            "PAXLINE_CLUSTER_SECRET": self.secret,
            "PAXLINE_API_TOKEN": self.token,
            "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            n.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                try:
                    n.proc.wait(20)
                except subprocess.TimeoutExpired:
                    # A node busy in a long catch-up may not exit promptly on SIGTERM; never
                    # leave it running behind the caller's back.
                    n.proc.kill()
                    n.proc.wait(10)

    def stop(self) -> None:
        # SIGTERM every node first, then wait: a node may take a few seconds to close its
        # connections (over TLS, see coordinator/server/main.py), and they add up in series.
        for n in self.nodes.values():
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            if n.proc is not None and n.proc.poll() is None:
                try:
                    n.proc.wait(20)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(10)

    def discard(self) -> None:
        """End every node with SIGKILL, no graceful stop: for a cluster whose data goes away
        with it (a test's temp dir). A SIGTERMed node waits up to ~2-3 s for its keep-alive
        connections to close (coordinator/server/main.py, timeout_graceful_shutdown)."""
        for node_id in list(self.nodes):
            self.kill(node_id, signal.SIGKILL)

    def status(self, node_id: int, timeout: float = 1.0) -> dict[str, object] | None:
        n = self.nodes[node_id]
        # A node's API is checked against the CA it was given, as its own clients would.
        ctx: ssl.SSLContext | None = n.tls.client_context(present_cert=False) if n.tls else None
        try:
            with urllib.request.urlopen(n.url + "/v1/cluster", timeout=timeout, context=ctx) as r:
                data = json.loads(r.read())
                return data if isinstance(data, dict) else None
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def leader(self) -> int | None:
        """The node that says it leads, when every live member agrees and can forward to it.

        A node counts as live if this object started it and it runs, or if it answers (it
        may have been started by an earlier `paxline up`). A node whose own view says it is
        no longer a member (removed, still running) takes no part: the leader stops talking
        to it, so its idea of the leader may stay stale for good."""
        views: dict[int, dict[str, object] | None] = {}
        for i, n in self.nodes.items():
            view = self.status(i)
            if (view is not None or n.alive()) and not _removed(i, view):
                views[i] = view
        leaders = {i for i, v in views.items() if v and v.get("role") == "leader"}
        if len(leaders) != 1:
            return None
        (leader,) = leaders
        url = self.nodes[leader].url
        if any(v is None or v.get("leader_api") != url for v in views.values()):
            return None
        return leader

    def wait_for_leader(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        found: list[int] = []

        def elected() -> bool:
            for n in self.nodes.values():
                if n.proc is not None and n.proc.poll() not in (None, -9, -15):
                    raise ServiceError(
                        f"coordinator {n.node_id} exited with {n.proc.returncode}; see {n.log_path}"
                    )
            leader = self.leader()
            if leader is not None and leader != exclude:
                found.append(leader)
                return True
            return False

        wait_until(elected, timeout, "a coordinator leader to be elected", interval=0.02)
        return found[-1]

    def wait_all_applied(self, timeout: float = 20.0) -> None:
        """Every live node has applied everything the leader has committed."""

        def caught_up() -> bool:
            views = [self.status(i) for i, n in self.nodes.items() if n.alive()]
            if any(v is None for v in views):
                return False
            commits = {int(str(v["commit_index"])) for v in views if v}
            applied = {int(str(v["applied_index"])) for v in views if v}
            return len(commits) == 1 and commits == applied

        wait_until(caught_up, timeout, "all coordinators to apply the same index")


def _removed(node_id: int, view: dict[str, object] | None) -> bool:
    """Whether `view` (a node's `/v1/cluster`) says that node left the membership."""
    membership = view.get("membership") if view else None
    members = membership.get("members") if isinstance(membership, dict) else None
    return isinstance(members, list) and node_id not in members
