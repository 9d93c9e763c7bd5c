"""MLRun's ``mlrun.serving.server`` names: the graph server, its context, ``create_graph_server``,
``MockTrigger`` (the trigger a ``server.test(..., trigger=...)`` event came from) and ``MockEvent``
(an event built by hand for ``server.run(event)``)."""
from __future__ import annotations

from typing import Any

from ..runtime.context import GraphContext
from ..runtime.event import Event
from ..runtime.server import GraphServer, create_graph_server


class MockTrigger:
    """A trigger for ``server.test(trigger=MockTrigger("v3io-stream"))``: ``kind`` and ``name``."""

    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind = kind
        self.name = name


class MockEvent(Event):
    """An event with MLRun's ``MockEvent`` arguments (a graphpack Event)."""

    def __init__(self, body: Any = None, content_type: str | None = None, headers: dict | None = None,
                 method: str | None = None, path: str | None = None, event_id: str | None = None,
                 trigger: Any = None, offset: int | None = None, time: Any = None) -> None:
        super().__init__(body, event_id, path or "/", method or ("POST" if body is not None else "GET"), headers)
        if content_type is not None:
            self.content_type = content_type
        self.trigger = trigger or MockTrigger()
        self.offset = offset or 0
        if time is not None:
            self.time = time


__all__ = ["GraphContext", "GraphServer", "MockEvent", "MockTrigger", "create_graph_server"]
