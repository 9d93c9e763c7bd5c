"""ParallelRun: every route on a copy of the event, merged results, failures propagate."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from graphpack.errors import BadRequestError, StepError
from graphpack.runtime.event import Event
from graphpack.serving.parallel import ParallelRun, RouteFailed

from .models import FakeRoute


def route(name: str, fn: Any) -> FakeRoute:
    return FakeRoute(name, fn=fn)


def test_merges_results_in_route_order() -> None:
    def a(event: Event) -> dict:
        event.body["touched"] = "a"  # must not leak into other routes or the merged body
        return {"a": event.body["x"] + 1, "shared": "a"}

    def b(event: Event) -> dict:
        assert "touched" not in event.body
        return {"b": event.body["x"] * 2, "shared": "b"}

    run = ParallelRun(routes={"a": route("a", a), "b": route("b", b)})
    out = run.do_event(Event({"x": 3}))
    assert out.body == {"a": 4, "b": 6, "shared": "b"}


def test_extend_event_keeps_the_input_and_non_dicts_go_under_route_key() -> None:
    run = ParallelRun(extend_event=True, executor_type="array", routes={
        "sum": route("sum", lambda e: sum(e.body["xs"])),
        "info": route("info", lambda e: {"n": len(e.body["xs"])}),
    })
    assert run.do_event(Event({"xs": [1, 2]})).body == {"xs": [1, 2], "sum": 3, "n": 2}


def test_routes_run_concurrently_in_threads() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def waiter(event: Event) -> dict:
        barrier.wait()  # only passes when all three routes run at the same time
        return {threading.current_thread().name: 1}

    run = ParallelRun(routes={k: route(k, waiter) for k in "abc"})
    started = time.monotonic()
    assert len(run.do_event(Event({})).body) == 3
    assert time.monotonic() - started < 5


def test_custom_merger() -> None:
    class Collect(ParallelRun):
        def merger(self, body: dict, results: dict) -> dict:
            body["all"] = results
            return body

    run = Collect(routes={"a": route("a", lambda e: 1), "b": route("b", lambda e: 2)})
    assert run.do_event(Event({})).body == {"all": {"a": 1, "b": 2}}


@pytest.mark.parametrize("executor", ["thread", "array"])
def test_failing_route_fails_the_event_after_all_ran(executor: str) -> None:
    finished: list[str] = []

    def ok(event: Event) -> dict:
        time.sleep(0.05)
        finished.append("ok")
        return {"ok": 1}

    def bad(event: Event) -> dict:
        raise ZeroDivisionError("division by zero")

    run = ParallelRun(name="par", executor_type=executor, routes={"bad": route("bad", bad), "ok": route("ok", ok)})
    with pytest.raises(RouteFailed, match="par: route 'bad' failed: ZeroDivisionError: division by zero") as info:
        run.do_event(Event({}))
    assert info.value.route == "bad"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert finished == ["ok"]


def test_http_and_step_errors_propagate_unchanged() -> None:
    def bad_request(event: Event) -> Any:
        raise BadRequestError("field y missing")

    run = ParallelRun(routes={"a": route("a", bad_request), "b": route("b", lambda e: {})})
    with pytest.raises(BadRequestError, match="field y missing"):
        run.do_event(Event({}))

    def step_error(event: Event) -> Any:
        raise StepError("par/a", ValueError("x"))

    run = ParallelRun(routes={"a": route("a", step_error)})
    with pytest.raises(StepError, match="par/a"):
        run.do_event(Event({}))
