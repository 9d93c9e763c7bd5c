"""The graph builder API and its serialised form (MLRun's shape: spec.graph with steps/routes)."""
import pytest

import graphpack
from graphpack import GraphpackError
from graphpack.graph.steps import ErrorStep, QueueStep, RouterStep, TaskStep


class Echo:
    def __init__(self, context=None, name=None, some_arg=None):
        self.some_arg = some_arg

    def do(self, x):
        return x


def test_to_chains_and_graph_to_starts_a_branch():
    fn = graphpack.new_function("f")
    graph = fn.set_topology("flow")
    a = graph.to(class_name="Echo", name="a", some_arg="abc")
    b = a.to(handler="json.dumps", name="b")
    c = graph.to(handler="(event + 1)", name="c")
    assert (a.after, b.after, c.after) == ([], ["a"], [])
    assert a.class_args == {"some_arg": "abc"}
    assert isinstance(b, TaskStep) and b.handler == "json.dumps"


def test_add_step_after_prev_and_before():
    graph = graphpack.new_function("f").set_topology("flow")
    graph.add_step(handler="(event)", name="a")
    graph.add_step(handler="(event)", name="c", after="$prev")
    graph.add_step(handler="(event)", name="b", after="a", before="c")
    assert graph["b"].after == ["a"] and graph["c"].after == ["b"]


def test_error_handler_returns_the_original_step():
    graph = graphpack.new_function("f").set_topology("flow")
    step = graph.to(handler="(event)", name="a")
    same = step.error_handler(name="eh", handler="(event)", before="b", full_event=True)
    assert same is step and step.on_error == "eh"
    handler = graph["eh"]
    assert isinstance(handler, ErrorStep) and handler.before == ["b"] and handler.base_step == "a"
    with pytest.raises(GraphpackError, match="'before' cannot be set"):
        graph.error_handler(name="g", handler="(event)", before="a")


def test_queue_and_router_kinds_from_aliases():
    graph = graphpack.new_function("f").set_topology("flow")
    q = graph.to(handler="(event)", name="a").to(">>", "q1", path="v3io://c/p", shards=2)
    assert isinstance(q, QueueStep) and q.path == "v3io://c/p" and q.shards == 2
    r = q.to("*", name="router", function="child")
    assert isinstance(r, RouterStep)
    r.add_route("m1:v2", class_name="Echo")
    assert "m1:v2" in r and r["m1:v2"].class_name == "Echo"
    with pytest.raises(GraphpackError, match="needs path="):
        graph.to(">>", "q2")


def test_step_given_as_object_or_class_is_saved_by_name():
    graph = graphpack.new_function("f").set_topology("flow")
    by_class = graph.to(class_name=Echo, name="c1")
    by_obj = graph.to(class_name=Echo(some_arg="x"), name="c2")
    assert by_class.class_name.endswith("Echo") and by_obj.class_args == {"some_arg": "x"}


def test_function_round_trip_is_equal():
    fn = graphpack.new_function("rt", project="p", image="python:3.11")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Echo", name="a", some_arg=1).to(">>", "q", path="s3://b/q") \
        .to(class_name="Echo", name="b", function="kid", input_path="x", result_path="y").respond()
    graph["a"].error_handler(name="eh", class_name="Echo", full_event=True)
    fn.add_child_function("kid", "kid.py", requirements=["pandas"])
    fn.spec.parameters = {"threshold": 0.4}
    fn.spec.error_stream = "s3://b/errors"
    fn.with_secrets("env", "A,B")
    fn.add_trigger("nightly", graphpack.CronTrigger(schedule="0 2 * * *", body={"op": "retrain"}))
    data = fn.to_dict()
    assert data["spec"]["graph"]["steps"]["b"]["after"] == ["q"]
    again = graphpack.function_from_dict(data)
    assert again.to_dict() == data
    assert graphpack.ServingFunction.from_dict(data).to_yaml() == fn.to_yaml()


def test_router_topology_round_trip_and_add_model():
    fn = graphpack.new_function("r")
    fn.add_model("m1", model_path="/models/m1.pkl", class_name="Echo")
    fn.add_model("m1:v2", model_path="/models/m1b.pkl")
    data = fn.to_dict()
    routes = data["spec"]["graph"]["routes"]
    assert routes["m1:v2"]["class_name"] == "graphpack.serving.V2ModelServer"
    assert routes["m1"]["class_args"] == {"model_path": "/models/m1.pkl"}
    assert graphpack.function_from_dict(data).to_dict() == data


def test_add_model_in_flow_needs_exactly_one_router():
    fn = graphpack.new_function("r")
    graph = fn.set_topology("flow")
    graph.to(handler="(event)", name="a")
    with pytest.raises(GraphpackError, match="no router step"):
        fn.add_model("m", model_path="x")
    graph.add_step("*", name="r1", after="a")
    graph.add_step("*", name="r2", after="a")
    with pytest.raises(GraphpackError, match=r"2 routers \(r1, r2\); set router_step="):
        fn.add_model("m", model_path="x")
    fn.add_model("m", model_path="x", router_step="r2")
    assert "m" in graph["r2"].routes


def test_unknown_spec_field_is_rejected():
    data = graphpack.new_function("x").to_dict()
    data["spec"]["colour"] = "blue"
    with pytest.raises(GraphpackError, match="unknown spec field.*colour"):
        graphpack.function_from_dict(data)
