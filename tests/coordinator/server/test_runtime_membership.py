"""The runtime's side of reconfiguration, without a cluster: the founding configuration
comes from the data dir's identity (not --peers), peer links follow the replicated
membership, and a hello from a peer further ahead links a node to the members it names."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from coordinator.server.identity import Identity, save_identity
from coordinator.server.runtime import _HELLO, NodeRuntime, ServerConfig
from paxline.localstack.common import free_port


def _runtime(data_dir: Path, peers: tuple[int, ...], founders: tuple[int, ...]) -> NodeRuntime:
    addrs = {i: ("127.0.0.1", free_port()) for i in peers}
    members = {i: f"nonce-{i}" for i in founders}
    save_identity(data_dir, Identity("test-cluster", 1, "inc-1", members=members), fsync=False)
    cfg = ServerConfig(
        node_id=1, peers=addrs, api=("127.0.0.1", free_port()), data_dir=data_dir,
        secret=b"membership-test-secret", api_token="token-123", fsync=False,
    )  # fmt: skip
    return NodeRuntime(cfg)


def test_the_founding_configuration_is_the_identitys_not_peers(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, peers=(1, 2, 3, 4, 5), founders=(1, 2, 3))
    assert rt.founders() == (1, 2, 3)
    assert rt.node.membership.latest() == (1, 2, 3)
    status = rt.membership_status()
    assert status["members"] == [1, 2, 3] and status["in_effect"] is True


def test_links_follow_the_membership_and_hellos_from_peers_ahead(tmp_path: Path) -> None:
    async def scenario() -> None:
        # --peers lists 4 and 5, which are not members: no links to them.
        rt = _runtime(tmp_path, peers=(1, 2, 3, 4, 5), founders=(1, 2, 3))
        await rt.start()
        try:
            assert sorted(rt.transport.peers) == [2, 3]
            # A member ahead of us names node 6 (added since): linked to until we catch up.
            hello = {"api": "http://127.0.0.1:1", "cluster": "test-cluster", "members": None,
                     "nonce": None, "promised": [1, 2], "applied": 40,
                     "addrs": {"2": "127.0.0.1:2", "6": "127.0.0.1:6"}}  # fmt: skip
            rt._on_frame(2, _HELLO + json.dumps(hello).encode())
            assert sorted(rt.transport.peers) == [2, 3, 6]
            assert rt.transport.peers[6] == ("127.0.0.1", 6)
            # A hello from a node not ahead of us (a removed one, say) links to nothing.
            behind = {**hello, "applied": 0, "addrs": {"7": "127.0.0.1:7"}}
            rt._on_frame(3, _HELLO + json.dumps(behind).encode())
            assert 7 not in rt.transport.peers
            # Another cluster's hello is ignored altogether.
            other = {**hello, "cluster": "another", "applied": 99, "addrs": {"8": "h:8"}}
            rt._on_frame(3, _HELLO + json.dumps(other).encode())
            assert 8 not in rt.transport.peers
        finally:
            await rt.stop()

    asyncio.run(scenario())
