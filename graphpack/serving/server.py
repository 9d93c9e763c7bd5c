"""MLRun's ``mlrun.serving.server`` names: the graph server, its context, ``create_graph_server``
and ``MockTrigger`` (the trigger a ``server.test(..., trigger=...)`` event came from)."""
from __future__ import annotations

from ..runtime.context import GraphContext
from ..runtime.server import GraphServer, create_graph_server


class MockTrigger:
    """A trigger for ``server.test(trigger=MockTrigger("v3io-stream"))``: ``kind`` and ``name``."""

    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind = kind
        self.name = name


__all__ = ["GraphContext", "GraphServer", "MockTrigger", "create_graph_server"]
