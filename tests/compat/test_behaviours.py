"""MLRun users' graphs run unchanged (issue 16): names at MLRun's module paths and the behaviours
MLRun graphs rely on, each under both engines. test_differential.py runs the same behaviours on
the real mlrun package; these tests pin graphpack's side, including what MLRun cannot run here.
"""
from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import graphpack
from graphpack.errors import GraphpackError
from graphpack.queues import open_queue
from graphpack.runtime.response import Response
from graphpack.serving.remote import BatchHttpRequests, RemoteConnectionError, RemoteStep, RemoteTimeoutError

from .echo_server import echo_server
from tests.plugins.net import free_port

ENGINES = ["sync", "async"]


class Tag:
    def __init__(self, context: Any = None, name: str | None = None, **kw: Any) -> None:
        self.name = name

    def do(self, x: Any) -> Any:
        x = dict(x) if isinstance(x, dict) else {"value": x}
        x["trail"] = x.get("trail", []) + [self.name]
        return x


class Boom:
    def do(self, x: Any) -> Any:
        raise ValueError(f"boom {x}")


class AsyncBoom:
    async def do(self, x: Any) -> Any:
        raise ValueError(f"async boom {x}")


class Seen:
    """An error handler that reports what failed and how."""

    def do(self, event: Any) -> Any:
        event.body = {"origin": event.origin_state, "error": event.error}
        return event


class Ready(graphpack.serving.V2ModelServer):
    def load(self) -> None:
        self.model = 1

    def predict(self, body: dict) -> list:
        return body["inputs"]


def flow(engine: str, name: str = "t") -> tuple[Any, Any]:
    fn = graphpack.new_function(name)
    return fn, fn.set_topology("flow", engine=engine)


# -- 1. names ------------------------------------------------------------------------------

def test_names_at_mlrun_module_paths() -> None:
    from graphpack.serving import create_graph_server
    from graphpack.serving.merger import Merge
    from graphpack.serving.remote import BatchHttpRequests as Batch, RemoteStep as Remote
    from graphpack.serving.routers import ModelRouter, ParallelRun, ParallelRunnerModes, VotingEnsemble
    from graphpack.serving.states import MAX_ALLOWED_STEPS, GraphError, RouterStep

    assert [Merge, Batch, Remote, ModelRouter, ParallelRun, VotingEnsemble, create_graph_server]
    assert ParallelRunnerModes.all() == ["thread", "process", "array"]
    assert ParallelRunnerModes("array") is ParallelRunnerModes.array and isinstance(ParallelRunnerModes.thread, str)
    router = RouterStep()
    for i in range(MAX_ALLOWED_STEPS):
        router.add_route(f"m{i}", class_name="Ready")
    with pytest.raises(GraphError, match=f"at most {MAX_ALLOWED_STEPS} routes"):
        router.add_route("one-too-many", class_name="Ready")


def test_except_clauses_written_for_mlrun_catch_graphpack_errors() -> None:
    from graphpack import errors

    fn, graph = flow("sync")
    graph.to(Tag, name="a")
    with pytest.raises(errors.MLRunInvalidArgumentError, match="topology is already set"):
        fn.set_topology("flow")
    with pytest.raises(errors.MLRunRuntimeError, match="no step named 'nothing'"):
        graph.add_step(Tag, name="b", after="nothing")
    with pytest.raises(errors.MLRunBadRequestError):
        raise graphpack.BadRequestError("bad")
    assert issubclass(errors.MLRunHTTPStatusError, graphpack.HTTPError)


def test_new_function_command_names_the_code_file_and_unknown_keywords_fail(tmp_path: Any) -> None:
    code = tmp_path / "steps.py"
    code.write_text("class Twice:\n    def do(self, x):\n        return x * 2\n")
    fn = graphpack.new_function("cmd", kind="serving", command=str(code))
    assert fn.spec.filename == str(code)
    fn.set_topology("flow", engine="sync").to("Twice", name="twice")
    assert fn.to_mock_server().test("/", 21) == 42
    with pytest.raises(TypeError, match="no_such_argument"):
        graphpack.new_function("t", no_such_argument=1)  # type: ignore[call-arg]
    with pytest.raises(GraphpackError, match="args is not supported for serving functions"):
        graphpack.new_function("t", args=["--x"])


def test_project_set_function_takes_mlruns_arguments_only(tmp_path: Any) -> None:
    (tmp_path / "requirements.txt").write_text("# pinned\nscikit-learn==1.5.0\n\npandas\n")
    project = graphpack.get_or_create_project("p", str(tmp_path))
    fn = project.set_function(name="f", kind="serving", with_repo=False,
                              requirements_file=str(tmp_path / "requirements.txt"))
    assert fn.spec.requirements == ["scikit-learn==1.5.0", "pandas"]
    with pytest.raises(TypeError, match="no_such_argument"):
        project.set_function(name="g", no_such_argument=1)  # type: ignore[call-arg]


def test_create_graph_server_with_mlrun_keywords() -> None:
    from graphpack.serving import create_graph_server
    from graphpack.serving.states import RouterStep

    server = create_graph_server(parameters={"p": 1}, graph=RouterStep(), verbose=False, current_function="")
    server.graph.add_route("my", class_name=Ready, model_path="unused", z=100)
    server.init_states(None, globals())
    server.init_object(globals())
    assert server.test("/v2/models/my/infer", {"inputs": [1, 2]})["outputs"] == [1, 2]
    assert yaml.safe_load(server.to_yaml()) == json.loads(json.dumps(server.to_dict()))
    assert server.to_dict()["graph"]["routes"]["my"]["class_args"] == {"model_path": "unused", "z": 100}


def test_step_objects_serialise_with_mlrun_defaults() -> None:
    remote = RemoteStep(name="r", url="http://h/x", input_path="a", result_path="b", foo=1)
    assert remote.to_dict()["class_args"]["retries"] == 6  # MLRun's documented default
    assert remote.to_dict()["class_args"]["foo"] == 1
    assert {k: remote.to_dict()[k] for k in ("name", "input_path", "result_path")} == {
        "name": "r", "input_path": "a", "result_path": "b"}
    objects = [remote, BatchHttpRequests(url="http://h"), Ready(name="m", model_path="p", extra=3),
               graphpack.serving.ModelRouter(), graphpack.serving.VotingEnsemble(weights={"a": 3}),
               graphpack.serving.ParallelRun(extend_event=True)]
    for obj in objects:
        data = obj.to_dict()
        assert data["class_name"].endswith(type(obj).__qualname__) and data["name"]
        assert yaml.safe_load(obj.to_yaml()) == data
    assert objects[4].to_dict()["kind"] == "router" and objects[4].to_dict()["class_args"]["weights"] == {"a": 3}
    fn, graph = flow("sync")
    graph.to(Tag, name="a")
    assert yaml.safe_load(graph.to_yaml()) == graph.to_dict()


# -- 2. behaviours, both engines -----------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_step_objects_keep_name_paths_and_arguments(engine: str) -> None:
    with echo_server() as url:
        fn, graph = flow(engine)
        graph.to(RemoteStep(name="r1", url=f"{url}/one", result_path="one")) \
             .to(RemoteStep(name="r2", url=f"{url}/two", input_path="x", result_path="two", method="PUT")).respond()
        assert list(graph.steps) == ["r1", "r2"]  # two objects of one class: two steps, no "graph loop"
        assert graph["r2"].input_path == "x" and graph["r2"].class_args["method"] == "PUT"
        server = fn.to_mock_server()
        out = server.test("/", {"x": 1})
        server.wait_for_completion()
    assert out["one"]["path"] == "/one" and out["one"]["body"] == {"x": 1}
    assert out["two"] == {"method": "PUT", "path": "/two", "body": 1, "headers": {"content-type": "application/json"}}
    model_fn = graphpack.new_function("models")
    model_fn.set_topology("router")
    route = model_fn.add_model("m", class_name=Ready(name="ignored", model_path="unused", threshold=3))
    assert route.name == "m" and route.class_args["threshold"] == 3


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("failure", ["timeout", "refused"])
def test_remote_timeout_or_refusal_is_a_step_failure(engine: str, failure: str) -> None:
    with echo_server() as url:
        target = f"{url}/slow" if failure == "timeout" else f"http://127.0.0.1:{free_port()}/x"
        fn, graph = flow(engine)
        graph.to("$remote", name="r", url=target, retries=0, timeout=0.3).error_handler(
            name="seen", class_name=Seen, full_event=True)
        graph["r"].respond()
        fn.spec.error_stream = f"memory://remote-errors-{engine}-{failure}"
        server = fn.to_mock_server()
        out = server.test("/", {"a": 1})
        server.wait_for_completion()
        expected = "timed out after 0.3s" if failure == "timeout" else "failed to connect"
        assert out["origin"] == "r" and expected in out["error"]
        queue = open_queue(f"memory://remote-errors-{engine}-{failure}")
        records = [json.loads(i.data) for s in range(queue.shards) for i in queue.read(s, "g", 10, 0)]
        assert [r["step"] for r in records] == ["r"] and expected in records[0]["error"]
        # without a handler: a 500 naming the step and the failure, never a TypeError
        fn, graph = flow(engine)
        graph.to("$remote", name="r", url=target, retries=0, timeout=0.3).respond()
        server = fn.to_mock_server()
        response = server.test("/", {"a": 1}, silent=True)
        server.wait_for_completion()
        assert response.status_code == 500 and response.body["step"] == "r"
        kind = RemoteTimeoutError if failure == "timeout" else RemoteConnectionError
        assert response.body["error"].startswith(kind.__name__) and expected in response.body["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_prev_after_an_error_handler_is_the_step(engine: str) -> None:
    fn, graph = flow(engine)
    graph.to(Tag, name="a").error_handler(name="eh", handler="(event)")
    graph.add_step(Tag, name="next", after="$prev").respond()
    assert graph["next"].after == ["a"]
    assert fn.to_mock_server().test("/", {}) == {"trail": ["a", "next"]}


@pytest.mark.parametrize("engine", ENGINES)
def test_set_flow_with_step_dicts(engine: str) -> None:
    fn, graph = flow(engine)
    last = graph.set_flow([dict(class_name=Tag, name="s1"), dict(handler="(event)", name="s2"),
                           dict(class_name=Tag, name="s3")])
    assert last is graph["s3"] and graph["s3"].after == ["s2"]
    last.respond()
    assert fn.to_mock_server().test("/", {"k": 1}) == {"k": 1, "trail": ["s1", "s3"]}
    with pytest.raises(GraphpackError, match=r"set_flow\(\) on 'the graph': it already has steps \(s1, s2, s3\); "
                                             "pass force=True to replace them"):
        graph.set_flow([dict(class_name=Tag, name="x")])
    graph["s1"].set_flow([dict(class_name=Tag, name="t2")], force=True).respond()
    assert sorted(graph.steps) == ["s1", "t2"]
    assert fn.to_mock_server().test("/", {}) == {"trail": ["s1", "t2"]}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", ["", "v3io:///projects/p/q", "s3://bucket/q"])
def test_a_step_after_a_queue_must_name_its_function(engine: str, path: str) -> None:
    fn, graph = flow(engine)
    queue = graph.to(Tag, name="a").to(">>", "q", path=path)
    with pytest.raises(GraphpackError, match="step 'b' must set function=, because it follows queue 'q'"):
        queue.to(Tag, name="b")
    graph.add_step(Tag, name="b", after="q")  # built another way: rejected when the graph is built
    with pytest.raises(GraphpackError, match="step 'b' must set function=, because it follows queue 'q'"):
        fn.to_mock_server()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", ["", "memory://hop"])
def test_queue_hop_in_the_mock_serialises_as_on_the_wire(engine: str, path: str) -> None:
    fn, graph = flow(engine)
    graph.to(handler="(dict(seen=set([1])) if event == 'set' else event)", name="a") \
         .to(">>", "q", path=path).to(Tag, name="b", function="child").respond()
    server = fn.to_mock_server()
    assert server.test("/", {"k": (1, 2)}) == {"k": [1, 2], "trail": ["b"]}  # a tuple arrives as a list
    response = server.test("/", "set", silent=True, content_type="text/plain")
    assert response.status_code == 500 and "set" in response.body["error"]
    server.wait_for_completion()


@pytest.mark.parametrize("step", [Boom, AsyncBoom])
def test_async_without_responder_answers_id_and_logs_the_step_error(step: Any, caplog: Any) -> None:
    fn, graph = flow("async")
    graph.to(Tag, name="a").to(step, name="b")
    server = fn.to_mock_server()
    assert server.test("/", {"v": 1}, event_id="e1") == {"id": "e1"}
    server.wait_for_completion()
    assert "step b failed: ValueError: " in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_routers_and_ensembles_are_named_after_their_class(engine: str) -> None:
    fn = graphpack.new_function("ens")
    fn.set_topology("router", graphpack.serving.VotingEnsemble(vote_type="regression", weights={"a": 3, "b": 1}))
    fn.add_model("a", class_name=Ready, model_path="unused")
    fn.add_model("b", class_name=Ready, model_path="unused")
    server = fn.to_mock_server()
    assert server.test("/v2/models/VotingEnsemble/infer", {"inputs": [4.0]})["outputs"] == [4.0]
    assert server.test("/v2/models/", method="GET") == {"models": ["a", "b", "VotingEnsemble"],
                                                        "weights": {"a": 3, "b": 1}}
    fn, graph = flow(engine)
    router = graph.add_step(graphpack.serving.ModelRouter())
    router.add_route("m", class_name=Ready, model_path="unused")
    router.respond()
    assert router.name == "ModelRouter"
    assert fn.to_mock_server().test("/v2/models/m/infer", {"inputs": [1]})["outputs"] == [1]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_response_reaches_test_as_a_response(engine: str) -> None:
    fn, graph = flow(engine)
    graph.to(handler="answer", name="a").respond()

    def answer(x: Any, context: Any = None) -> Any:
        return context.Response(body=b"made", status_code=201, content_type="text/plain")

    server = fn.to_mock_server(namespace={"answer": answer})
    out = server.test("/", {"x": 1})
    assert isinstance(out, Response) and (out.status_code, out.body) == (201, b"made")
    router_fn = graphpack.new_function("r")
    router_fn.set_topology("router")
    router_fn.add_model("m", class_name=Ready, model_path="unused")
    ready = router_fn.to_mock_server().test("/v2/models/m/ready", method="GET", event_id="e")
    assert isinstance(ready, Response) and ready.status_code == 200
    assert ready.body == b"Model m is ready (event_id = e)"


@pytest.mark.parametrize("engine", ENGINES)
def test_undeclared_function_fails_at_deploy_and_runs_in_the_mock(engine: str) -> None:
    fn, graph = flow(engine)
    graph.to(Tag, name="a").to(">>", "q", path="memory://undeclared").to(Tag, name="b", function="ghost").respond()
    assert fn.to_mock_server(current_function="*").test("/", {}) == {"trail": ["a", "b"]}
    with pytest.raises(GraphpackError, match="function 'ghost' is used in steps and is not defined, "
                                             r"use .add_child_function\('ghost', ...\)"):
        fn.deploy()


@pytest.mark.parametrize("engine", ENGINES)
def test_deploy_function_mock_serves_invoke_in_process(engine: str) -> None:
    fn, graph = flow(engine, "mocked")
    graph.to(Tag, name="a").respond()
    status = graphpack.deploy_function(fn, mock=True)
    assert status.outputs == {"endpoint": "Mock", "name": "mocked"}
    assert status.function.invoke("/", {"k": 1}) == {"k": 1, "trail": ["a"]}
    assert fn.deploy(mock=True) == "Mock" and fn.invoke("/", {}) == {"trail": ["a"]}
