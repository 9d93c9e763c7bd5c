"""Merge: join branch events by id or key, expected count from the graph, max_behind."""
from __future__ import annotations

from typing import Any

import pytest

from graphpack.errors import GraphpackError
from graphpack.runtime.context import GraphContext
from graphpack.runtime.event import Event
from graphpack.serving.merger import Merge


def test_joins_by_event_id() -> None:
    merge = Merge(expected_num_events=2)
    assert merge.do_event(Event({"a": 1}, id="e1")) is None
    assert merge.do_event(Event({"x": 0}, id="e2")) is None
    out = merge.do_event(Event({"b": 2}, id="e1"))
    assert out.id == "e1" and out.body == [{"a": 1}, {"b": 2}]
    assert merge.pending == 1


def test_joins_by_key_path_and_custom_merge() -> None:
    class Dicts(Merge):
        def merge_function(self, bodies: list) -> Any:
            out: dict = {}
            for body in bodies:
                out.update(body)
            return out

    merge = Dicts(key_path="event['user']", expected_num_events=3)
    assert merge.do_event(Event({"user": "u1", "a": 1})) is None
    assert merge.do_event(Event({"user": "u1", "b": 2})) is None
    assert merge.do_event(Event({"user": "u1", "c": 3})).body == {"user": "u1", "a": 1, "b": 2, "c": 3}
    dotted = Merge(key_path="meta.k", expected_num_events=2)
    assert dotted.do_event(Event({"meta": {"k": 1}, "v": "x"})) is None
    assert dotted.do_event(Event({"meta": {"k": 1}, "v": "y"})).body[1]["v"] == "y"


def test_expected_count_from_graph_step_after() -> None:
    step = type("Step", (), {"after": ["left", "mid", "right"]})()
    merge = Merge(graph_step=step)
    merge.post_init("sync")
    assert merge.expected_num_events == 3
    with pytest.raises(GraphpackError, match="set expected_num_events"):
        Merge().do_event(Event({}))


def test_max_behind_drops_oldest_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    pushed: list[tuple] = []
    context = GraphContext()
    context._error_pusher = lambda step, error, body, event_id, **extra: pushed.append(
        {"step": step, "error": error, "body": body, "id": event_id})
    merge = Merge(context=context, name="join", expected_num_events=2, max_behind=2)
    for key in ("k1", "k2", "k3"):
        assert merge.do_event(Event({"k": key}, id=key)) is None
    assert merge.pending == 2
    assert len(pushed) == 1
    assert "dropped key 'k1'" in pushed[0]["error"] and pushed[0]["step"] == "join"
    assert merge.do_event(Event({}, id="k1")) is None  # k1 starts over
    assert merge.do_event(Event({}, id="k3")).id == "k3"


def test_bad_arguments() -> None:
    with pytest.raises(GraphpackError, match="max_behind must be >= 1"):
        Merge(max_behind=0)
    with pytest.raises(GraphpackError, match="expected_num_events must be >= 1"):
        Merge(expected_num_events=-1)
    with pytest.raises(GraphpackError, match="not a valid expression"):
        Merge(key_path="event[")
