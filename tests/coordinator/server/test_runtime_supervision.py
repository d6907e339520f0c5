"""A node whose consensus loop (or any task that must run until shutdown) stops reports it
through `NodeRuntime.failed` instead of lingering as a node that answers HTTP but no longer
votes; `serve` turns that into a non-zero exit for the supervisor to restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coordinator.server.identity import Identity, save_identity
from coordinator.server.main import NodeFailed, serve
from coordinator.server.runtime import NodeRuntime, ServerConfig
from paxline.localstack.common import free_port


def _config(data_dir: Path) -> ServerConfig:
    """Node 1 of a 3-node cluster whose other nodes never start."""
    peers = {i: ("127.0.0.1", free_port()) for i in (1, 2, 3)}
    # A member of an established cluster, so that the loop runs without peers.
    save_identity(data_dir, Identity("test-cluster", 1, "inc-1"), fsync=False)
    return ServerConfig(
        node_id=1, peers=peers, api=("127.0.0.1", free_port()), data_dir=data_dir,
        secret=b"supervision-test-secret", api_token="token-123", fsync=False,
    )  # fmt: skip


def test_a_crashed_consensus_loop_is_reported_as_a_node_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = _config(tmp_path)
        rt = NodeRuntime(cfg)

        def broken_tick() -> None:
            raise ValueError("a bug in the core")

        rt.node.tick = broken_tick  # type: ignore[method-assign]
        await rt.start()
        try:
            assert rt.failed is not None
            reason = await asyncio.wait_for(asyncio.shield(rt.failed), timeout=5)
            assert "paxos-loop" in reason and "a bug in the core" in reason
        finally:
            await rt.stop()

    asyncio.run(scenario())


def test_a_clean_stop_is_not_a_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = _config(tmp_path)
        rt = NodeRuntime(cfg)
        await rt.start()
        await rt.stop()
        assert rt.failed is not None and not rt.failed.done()

    asyncio.run(scenario())


def test_serve_stops_the_api_and_raises_when_the_consensus_loop_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `paxline coordinator run` turns into exit status 1."""

    async def crashing_loop(self: NodeRuntime) -> None:
        raise ValueError("a bug in the loop")

    monkeypatch.setattr(NodeRuntime, "_loop", crashing_loop)
    cfg = _config(tmp_path)

    async def scenario() -> None:
        await asyncio.wait_for(serve(cfg), timeout=20)

    with pytest.raises(NodeFailed, match="paxos-loop stopped: ValueError"):
        asyncio.run(scenario())
