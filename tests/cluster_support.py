"""Real ``twistd spartan --redis`` nodes, for the cluster tests."""

from __future__ import annotations

from pathlib import Path

from tests.support import LineClient, TwistdServer, wait_for

__all__ = ["LineClient", "Node", "wait_for"]


class Node(TwistdServer):
    """``twistd -n spartan --redis URL --node-name NAME`` in its own process."""

    def __init__(self, tmp_path: Path, redis_url: str, name: str, *args: str, port: int | None = None):
        super().__init__(
            tmp_path, "--redis", redis_url, "--node-name", name, *args, port=port, name=f"node-{name}"
        )
        self.name = name
