"""Example paxline jobs; each module exposes ``job`` and a plain-Python ``expected``."""

__all__: list[str] = []
