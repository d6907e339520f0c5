"""A local 3-member etcd cluster for `bench/coordinator.py` (Debian `etcd-server`, 3.4).

Every member listens on its own 127.0.0.1 ports with its own data directory, with etcd's
defaults otherwise (fsync on, heartbeat 100 ms, election timeout 1000 ms). Puts go through
the HTTP/JSON gRPC gateway: `POST /v3/kv/put` with base64 key and value.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from paxline.localstack.common import free_port

__all__ = ["EtcdCluster", "etcd_binary"]


def etcd_binary() -> str | None:
    return shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    def __init__(self, base_dir: Path, size: int = 3, binary: str = "etcd") -> None:
        self.binary = binary
        self.base_dir = base_dir.resolve()
        self.members = {
            i: EtcdMember(
                f"e{i}",
                free_port(),
                free_port(),
                self.base_dir / f"e{i}",
                self.base_dir / f"e{i}.log",
            )
            for i in range(1, size + 1)
        }

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members.values())

    def start(self, timeout: float = 30.0) -> int:
        for i in self.members:
            self.start_member(i)
        return self.wait_for_leader(timeout)

    def start_member(self, i: int) -> None:
        m = self.members[i]
        if m.alive():
            return
        fresh = not m.data_dir.exists()
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.binary,
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            m.client_url,
            "--advertise-client-urls",
            m.client_url,
            "--listen-peer-urls",
            m.peer_url,
            "--initial-advertise-peer-urls",
            m.peer_url,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-token",
            "paxline-bench",
            "--initial-cluster-state",
            "new" if fresh else "existing",
        ]
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            m.proc.wait(30)

    def stop(self) -> None:
        for i in self.members:
            self.kill(i, signal.SIGTERM)

    def status(self, i: int, timeout: float = 1.0) -> dict[str, object] | None:
        req = urllib.request.Request(
            self.members[i].client_url + "/v3/maintenance/status", data=b"{}", method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = json.loads(r.read())
                return data if isinstance(data, dict) else None
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def leader(self) -> int | None:
        """The member every live member names as leader."""
        ids: dict[str, int] = {}
        named: set[str] = set()
        for i, m in self.members.items():
            if not m.alive():
                continue
            st = self.status(i)
            if st is None:
                return None
            header = st.get("header")
            if not isinstance(header, dict):
                return None
            ids[str(header.get("member_id"))] = i
            named.add(str(st.get("leader", "0")))
        if len(named) != 1:
            return None
        (lead,) = named
        return ids.get(lead)

    def wait_for_leader(self, timeout: float = 30.0, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.members.values():
                if m.proc is not None and m.proc.poll() not in (None, -9, -15):
                    raise RuntimeError(f"etcd {m.name} exited; see {m.log_path}")
            lead = self.leader()
            if lead is not None and lead != exclude:
                return lead
            time.sleep(0.05)
        raise TimeoutError(f"no etcd leader within {timeout}s; logs in {self.base_dir}")

    def wait_all_caught_up(self, timeout: float = 20.0) -> None:
        """Every live member reports the same raft index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = [self.status(i) for i, m in self.members.items() if m.alive()]
            if all(v is not None for v in views):
                idx = {str(v.get("raftIndex")) for v in views if v}
                if len(idx) == 1:
                    return
            time.sleep(0.05)
        raise TimeoutError("etcd members did not converge on one raft index")
