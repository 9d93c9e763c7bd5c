"""Build-time validation: each bad graph gives a GraphpackError naming the step and field."""
import pytest

import graphpack
from graphpack import GraphpackError


def flow(engine="sync"):
    fn = graphpack.new_function("v")
    return fn, fn.set_topology("flow", engine=engine)


def mock(fn):
    return fn.to_mock_server()


def test_unknown_after_names_the_step():
    fn, graph = flow()
    graph.to(handler="(event)", name="a")
    with pytest.raises(GraphpackError, match="cannot add it after 'nope'"):
        graph.add_step(handler="(event)", name="b", after="nope")
    graph["a"].after = ["ghost"]
    with pytest.raises(GraphpackError, match="step 'a': field 'after' names unknown step 'ghost'"):
        mock(fn)


def test_loop_is_reported_with_its_path():
    fn, graph = flow()
    graph.to(handler="(event)", name="a").to(handler="(event)", name="b").to(handler="(event)", name="c")
    graph["a"].after_step("c")
    with pytest.raises(GraphpackError, match="graph loop: .*a.*b.*c"):
        mock(fn)


def test_before_equal_to_after_is_a_loop():
    fn, graph = flow()
    graph.to(handler="(event)", name="a")
    with pytest.raises(GraphpackError, match="graph loop"):
        graph.add_step(handler="(event)", name="b", after="a", before="a")


def test_unknown_before_in_error_step():
    fn, graph = flow()
    graph.to(handler="(event)", name="a").error_handler(name="eh", handler="(event)", before="missing")
    with pytest.raises(GraphpackError, match="error step 'eh': field 'before' names unknown step 'missing'"):
        mock(fn)


def test_two_responders_are_both_named():
    fn, graph = flow()
    graph.to(handler="(event)", name="first").respond().to(handler="(event)", name="second").respond()
    with pytest.raises(GraphpackError, match=r"more than one responder step in the graph \(first, second\)"):
        mock(fn)


def test_step_after_queue_needs_function():
    fn, graph = flow()
    queue = graph.to(handler="(event)", name="a").to(">>", "q1", path="s3://b/q")
    with pytest.raises(GraphpackError, match="step 'b' must set function=, because it follows queue 'q1'"):
        queue.to(handler="(event)", name="b")
    graph.add_step(handler="(event)", name="b2", after="q1")
    with pytest.raises(GraphpackError, match="step 'b2' must set function="):
        mock(fn)


def test_function_must_be_a_declared_child():
    fn, graph = flow()
    graph.to(handler="(event)", name="a").to(">>", "q", path="s3://b/q").to(handler="(event)", name="b", function="kid")
    assert mock(fn).test("/", 1) == 1  # the mock runs every function in-process, declared or not
    message = "step 'b': field 'function': function 'kid' is used in steps and is not defined, use .add_child_function"
    with pytest.raises(GraphpackError, match=message):
        fn.deploy()
    fn.add_child_function("kid", "kid.py")
    assert mock(fn).test("/", 1) == 1


def test_unknown_class_and_handler_name_the_step():
    fn, graph = flow()
    graph.to(class_name="NoSuchClass", name="s1")
    with pytest.raises(GraphpackError, match="step 's1': class 'NoSuchClass' not found"):
        mock(fn)
    fn, graph = flow()
    graph.to(handler="no_such_handler", name="s2")
    with pytest.raises(GraphpackError, match="step 's2': handler 'no_such_handler' not found"):
        mock(fn)
    fn, graph = flow()
    graph.to(handler="(event +)", name="s3")
    with pytest.raises(GraphpackError, match="step 's3': handler expression"):
        mock(fn)


def test_missing_handler_method_and_bad_init_args():
    class Thing:
        def __init__(self, a):
            self.a = a

        def do(self, x):
            return x

    fn, graph = flow()
    graph.to(class_name=Thing, name="t", a=1, handler="nope")
    with pytest.raises(GraphpackError, match="step 't': handler 'nope' does not exist in class Thing"):
        mock(fn)
    fn, graph = flow()
    graph.to(class_name=Thing, name="t", b=2)
    with pytest.raises(GraphpackError, match="step 't': cannot create Thing"):
        mock(fn)


def test_bad_engine_and_topology():
    fn = graphpack.new_function("x")
    with pytest.raises(GraphpackError, match="unknown topology 'dag'"):
        fn.set_topology("dag")
    with pytest.raises(GraphpackError, match="unknown engine 'fast'"):
        fn.set_topology("flow", engine="fast")
    fn.set_topology("flow")
    with pytest.raises(GraphpackError, match="topology is already set"):
        fn.set_topology("router")
    old = fn.spec.graph
    assert fn.set_topology("router", exist_ok=True) is fn.spec.graph is not old  # replaced, as in MLRun


def test_full_event_with_paths_is_rejected():
    fn, graph = flow()
    graph.to(handler="(event)", name="s", full_event=True, input_path="a")
    with pytest.raises(GraphpackError, match="step 's': input_path/result_path cannot be used with full_event"):
        mock(fn)


def test_child_reading_two_queues_is_rejected():
    fn, graph = flow()
    fn.add_child_function("kid", "kid.py")
    a = graph.to(handler="(event)", name="a")
    a.to(">>", "q1", path="memory://q1").to(handler="(event)", name="b", function="kid")
    a.to(">>", "q2", path="memory://q2").to(handler="(event)", name="c", function="kid")
    with pytest.raises(GraphpackError, match="function 'kid' cannot read from two queues"):
        mock(fn)


def test_no_graph():
    fn = graphpack.new_function("empty")
    with pytest.raises(GraphpackError, match="has no graph"):
        fn.to_mock_server()
