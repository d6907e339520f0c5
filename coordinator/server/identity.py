"""Which cluster a data directory belongs to, so that a node never votes with state it lost.

An empty data directory looks exactly like a node that has never voted; only the operator
knows which it is. So an empty directory is refused unless the operator says
`--initial-cluster new` (bootstrap: every node writes a random nonce before it talks to anyone,
and the cluster id is the hash of all nodes' nonces, so a node whose disk is wiped later has a
new nonce and cannot pass as a founder) or `--join` (disk replacement: learn, then vote above
the highest ballot the other nodes had promised).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from coordinator.paxos.types import ZERO_BALLOT, Ballot
from coordinator.server.wal import atomic_write

__all__ = ["Identity", "cluster_id_of", "has_state", "load_identity", "nonce", "save_identity"]

_FILE = "identity.json"
_NONCE = "bootstrap-nonce"


@dataclass(frozen=True)
class Identity:
    cluster_id: str
    node_id: int
    incarnation: str
    floor: Ballot = ZERO_BALLOT
    members: dict[int, str] | None = None  # founders' nonces, to admit a slow founder


def load_identity(data_dir: Path) -> Identity | None:
    path = data_dir / _FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    members = raw.get("members")
    return Identity(
        str(raw["cluster_id"]),
        int(raw["node_id"]),
        str(raw["incarnation"]),
        Ballot(*raw["floor"]),
        {int(k): str(v) for k, v in members.items()} if members is not None else None,
    )


def save_identity(data_dir: Path, ident: Identity, fsync: bool = True) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "cluster_id": ident.cluster_id,
        "node_id": ident.node_id,
        "incarnation": ident.incarnation,
        "floor": [ident.floor.round, ident.floor.node],
        "members": ident.members,
    }
    atomic_write(data_dir / _FILE, json.dumps(body).encode(), fsync)


def has_state(data_dir: Path) -> bool:
    paxos = data_dir / "paxos"
    return any(p.stat().st_size > 0 for p in paxos.glob("*")) if paxos.exists() else False


def nonce(data_dir: Path, fsync: bool = True) -> str:
    """This directory's bootstrap nonce, created durably on first use."""
    path = data_dir / _NONCE
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, value.encode(), fsync)
    return value


def cluster_id_of(members: dict[int, str]) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted(members.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_incarnation() -> str:
    return secrets.token_hex(8)
