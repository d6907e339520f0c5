"""`LocalCluster.leader()`: which node the local tools and tests call the leader, from every
node's own `/v1/cluster` view (scripted here; the real views come from running nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxline.localstack.coordinators import LocalCluster


class ScriptedCluster(LocalCluster):
    """Answers `/v1/cluster` from a table instead of HTTP (None: the node does not answer)."""

    def __init__(self, base: Path, views: dict[int, dict[str, object] | None]) -> None:
        super().__init__(base, size=len(views))
        self.views = views

    def status(self, node_id: int, timeout: float = 1.0) -> dict[str, object] | None:
        return self.views[node_id]


def view(
    cluster: LocalCluster, role: str, leader: int | None, members: list[int]
) -> dict[str, object]:
    return {
        "role": role,
        "leader_api": cluster.nodes[leader].url if leader else None,
        "membership": {"members": members},
    }


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        # every member agrees on node 2
        (
            {
                1: ("follower", 2, [1, 2, 3]),
                2: ("leader", 2, [1, 2, 3]),
                3: ("follower", 2, [1, 2, 3]),
            },
            2,
        ),
        # a member still points at the old leader: no agreement yet
        (
            {
                1: ("follower", 1, [1, 2, 3]),
                2: ("leader", 2, [1, 2, 3]),
                3: ("follower", 2, [1, 2, 3]),
            },
            None,
        ),
        # node 1 was removed and knows it; its stale view does not count (the CI flake of
        # test_grow_to_five_and_shrink_to_three...: a leader for 30 s, never "agreed")
        ({1: ("follower", 1, [2, 3]), 2: ("leader", 2, [2, 3]), 3: ("follower", 2, [2, 3])}, 2),
        # a node that does not answer and was not started here does not count
        ({1: None, 2: ("leader", 2, [1, 2, 3]), 3: ("follower", 2, [1, 2, 3])}, 2),
        # two nodes say they lead
        (
            {
                1: ("leader", 1, [1, 2, 3]),
                2: ("leader", 2, [1, 2, 3]),
                3: ("follower", 2, [1, 2, 3]),
            },
            None,
        ),
    ],
)
def test_the_leader_is_the_one_every_live_member_agrees_on(
    tmp_path: Path, scenario: dict[int, tuple[str, int, list[int]] | None], expected: int | None
) -> None:
    cluster = ScriptedCluster(tmp_path, {i: None for i in scenario})
    cluster.views = {
        i: None if s is None else view(cluster, s[0], s[1], s[2]) for i, s in scenario.items()
    }
    assert cluster.leader() == expected
