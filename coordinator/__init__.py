"""paxline coordinator: the Multi-Paxos group that agrees on jobs, ownership and checkpoints."""

__all__: list[str] = []
