"""Graphs thousands of steps deep run under both engines: the walk keeps its own stack, so
Python's recursion limit (1,000 frames) never bounds a graph."""
import sys

import pytest

import graphpack

ENGINES = ["sync", "async"]
DEPTH = 2000


class Inc:
    def do(self, x):
        return x + 1


class AsyncInc:
    async def do(self, x):
        return x + 1


class Boom:
    def do(self, x):
        raise ValueError(f"boom at {x}")


class Catch:
    def do_event(self, event):
        event.body = {"caught": event.error, "origin": event.origin_state, "was": event.body}
        return event


def chain(engine, step_class, *, graph_handler=False, fail=False):
    """DEPTH steps adding 1, optionally ending in a failing step."""
    fn = graphpack.new_function("deep")
    graph = fn.set_topology("flow", engine=engine)
    step = graph
    for i in range(DEPTH):
        step = step.to(class_name=step_class, name=f"s{i}")
    if fail:
        step = step.to(class_name="Boom", name="boom")
    step.respond()
    if graph_handler:
        graph.error_handler(name="catch", class_name="Catch")
    return fn.to_mock_server(namespace=globals())


@pytest.fixture(autouse=True)
def default_recursion_limit():
    """Python's default limit while each test runs: a library imported earlier in the session
    may have raised it, which would hide a recursive walk."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(before)


def test_the_depth_is_beyond_the_recursion_limit():
    assert DEPTH > sys.getrecursionlimit()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("step_class", ["Inc", "AsyncInc"])
@pytest.mark.parametrize("graph_handler", [False, True])
def test_deep_chain(engine, step_class, graph_handler):
    server = chain(engine, step_class, graph_handler=graph_handler)
    assert server.test("/", 0) == DEPTH
    assert server.test("/", 5) == DEPTH + 5


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("step_class", ["Inc", "AsyncInc"])
def test_deep_chain_failure_reaches_the_graph_error_handler(engine, step_class):
    server = chain(engine, step_class, graph_handler=True, fail=True)
    assert server.test("/", 0) == {"caught": f"boom at {DEPTH}", "origin": "boom", "was": DEPTH}


@pytest.mark.parametrize("engine", ENGINES)
def test_deep_chain_failure_without_handler_names_the_step(engine):
    server = chain(engine, "Inc", fail=True)
    with pytest.raises(graphpack.RequestFailed) as info:
        server.test("/", 0)
    assert "boom at 2000" in str(info.value) and "Recursion" not in str(info.value)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("step_class", ["Inc", "AsyncInc"])
def test_deep_comb_of_fan_outs_with_step_error_handlers(engine, step_class):
    """Every level forks: a side branch that fails into its own handler, and the spine that goes
    on; DEPTH levels of fan-out, each handled failure recorded, the spine's end responds."""
    seen = []

    class Record:
        def do_event(self, event):
            seen.append(event.body)
            return None  # handled: the side branch ends here

    fn = graphpack.new_function("comb")
    graph = fn.set_topology("flow", engine=engine)
    graph.add_step(class_name="Record", name="record", after=[])
    spine = graph
    for i in range(DEPTH // 2):
        spine = spine.to(class_name=step_class, name=f"spine{i}")
        side = spine.to(class_name="Boom", name=f"side{i}")
        side.error_handler(name="record")
    spine.to(class_name=step_class, name="last").respond()
    server = fn.to_mock_server(namespace={**globals(), "Record": Record})
    assert server.test("/", 0) == DEPTH // 2 + 1
    assert sorted(seen) == list(range(1, DEPTH // 2 + 1))
