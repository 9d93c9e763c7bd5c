"""Model serving through graphpack's functions and mock server: the seed router and flow
examples with a real scikit-learn model, plus status codes, ensembles, parallel runs,
remote steps and error handlers inside graphs (both engines where graphs are flows)."""
from __future__ import annotations

import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

import graphpack
from graphpack.errors import RequestFailed
from graphpack.runtime.event import Event
from graphpack.serving.v2_model_server import V2ModelServer

from .models import ClassifierModel  # noqa: F401 - resolved by name from this module's globals

ENGINES = ["sync", "async"]


class EchoModel(V2ModelServer):
    """Returns its inputs, plus a custom op and an explanation."""

    def predict(self, request: dict) -> list:
        return request["inputs"]

    def explain(self, request: dict) -> dict:
        return {"features": len(request["inputs"][0])}

    def op_describe(self, event: Event) -> dict:
        return {"model": self.name, "version": self.version, "prefix": self.get_param("prefix")}


class Labels(V2ModelServer):
    def predict(self, request: dict) -> list:
        return [self.get_param("label")] * len(request["inputs"])


class Failing:
    def do(self, body: Any) -> Any:
        raise ValueError("feature store down")


class Catcher:
    def do_event(self, event: Event) -> Any:
        return {"caught": str(event.error), "origin": event.origin_state}


def two_rows(iris: Any) -> list:
    return [iris["data"][0].tolist(), iris["data"][149].tolist()]


def test_seed_router_with_sklearn_model(iris_model_file: Path, iris: Any) -> None:
    fn = graphpack.new_function("serving_example")
    fn.set_topology("router")
    fn.add_model("model1", class_name="ClassifierModel", model_path=str(iris_model_file))
    server = fn.to_mock_server()
    result = server.test("/v2/models/model1/infer", {"inputs": two_rows(iris)})
    assert result["outputs"] == [0, 2]
    assert result["model_name"] == "model1"
    assert set(result) == {"id", "model_name", "outputs", "timestamp"}  # no model_version, as MLRun 1.12
    full = server.test("/v2/models/model1/infer", {"inputs": iris["data"].tolist()})
    expected = pickle.loads(iris_model_file.read_bytes()).predict(iris["data"]).tolist()
    assert full["outputs"] == expected and len(expected) == 150


def test_router_versions_list_health_metadata_ready_explain_op(iris_model_file: Path) -> None:
    fn = graphpack.new_function("models")
    fn.add_model("m1", class_name="EchoModel", model_path=str(iris_model_file), prefix="p1")
    fn.add_model("m1:v2", class_name=EchoModel, model_path=str(iris_model_file), prefix="p2")
    fn.add_model("iris", class_name="ClassifierModel", model_path=str(iris_model_file))
    server = fn.to_mock_server()
    assert server.test("/v2/models/", method="GET") == {"models": ["m1", "m1:v2", "iris"]}
    assert server.test("/v2/health", method="GET") == {"name": "ModelRouter", "version": "v2", "extensions": []}
    assert server.test("/v2/models/m1/versions/v2", method="GET") == {
        "name": "m1", "inputs": [], "outputs": []}  # no version, as MLRun 1.12
    ready = server.test("/v2/models/iris/ready", method="GET", get_body=False)
    assert ready.status_code == 200 and b"Model iris is ready" in ready.body
    assert server.test("/v2/models/m1/explain", {"inputs": [[1, 2, 3]]})["outputs"] == {"features": 3}
    assert server.test("/v2/models/m1/versions/v2/describe", {}) == {"model": "m1", "version": "v2", "prefix": "p2"}
    assert server.test("/", {"model": "m1:v2", "inputs": [5]})["outputs"] == [5]
    assert server.test("/v2/models/m1/infer", {"inputs": [7], "id": "mine"})["id"] == "mine"


@pytest.mark.parametrize(
    "path, body, method, message",
    [
        ("/v2/models/ghost/infer", {"inputs": [1]}, "", "model 'ghost' does not exist, available models: a | b"),
        ("/", {"inputs": [1]}, "", "no model selected"),
        ("/v2/models/a/dance", {"inputs": [1]}, "", "unknown operation 'dance' for model a"),
        ("/v2/models/a/infer", {"rows": [1]}, "", 'Expected key "inputs" in request body'),
        ("/v2/models/a/infer", {"inputs": 1}, "", 'Expected "inputs" to be a list'),
        ("/v1/models/a/infer", {"inputs": [1]}, "", "unsupported protocol version v1"),
        ("/v2/models/a/versions/v7/infer", {"inputs": [1]}, "", "model 'a:v7' does not exist"),
    ],
)
def test_bad_requests_answer_400(path: str, body: Any, method: str, message: str) -> None:
    fn = graphpack.new_function("bad")
    fn.add_model("a", class_name="EchoModel", model_path="unused")
    fn.add_model("b", class_name="EchoModel", model_path="unused")
    server = fn.to_mock_server()
    response = server.test(path, body, method=method, silent=True, get_body=False)
    assert response.status_code == 400
    assert message in response.body["error"]
    with pytest.raises(RequestFailed, match="failed \\(400\\)"):
        server.test(path, body, method=method)


def test_undecodable_json_is_400() -> None:
    fn = graphpack.new_function("bad")
    fn.add_model("a", class_name="EchoModel", model_path="unused")
    response = fn.to_mock_server().test("/v2/models/a/infer", b"{oops", content_type="application/json",
                                        silent=True, get_body=False)
    assert response.status_code == 400


def test_async_load_mode_is_503_until_loaded(iris_model_file: Path, iris: Any) -> None:
    gate = threading.Event()

    class SlowClassifier(ClassifierModel):
        def load(self) -> None:
            gate.wait(10)
            super().load()

    fn = graphpack.new_function("slow")
    fn.add_model("slow", class_name=SlowClassifier, model_path=str(iris_model_file))
    fn.spec.load_mode = "async"
    server = fn.to_mock_server()
    try:
        response = server.test("/v2/models/slow/infer", {"inputs": two_rows(iris)}, silent=True, get_body=False)
        assert response.status_code == 503
        assert response.body["error"] == "model slow is not ready"
        assert server.test("/v2/models/slow/ready", method="GET", silent=True, get_body=False).status_code == 503
    finally:
        gate.set()
    deadline = threading.Event()
    for _ in range(100):
        response = server.test("/v2/models/slow/infer", {"inputs": two_rows(iris)}, silent=True, get_body=False)
        if response.status_code == 200:
            break
        deadline.wait(0.05)
    assert response.status_code == 200 and response.body["outputs"] == [0, 2]


def test_user_code_error_is_500_with_step() -> None:
    class Broken(V2ModelServer):
        def predict(self, request: dict) -> list:
            raise ZeroDivisionError("bad math")

    fn = graphpack.new_function("broken")
    fn.add_model("b", class_name=Broken, model_path="unused")
    response = fn.to_mock_server().test("/v2/models/b/infer", {"inputs": [1]}, silent=True, get_body=False)
    assert response.status_code == 500
    assert response.body["error"] == "ZeroDivisionError: bad math"
    assert "b" in response.body["step"]


@pytest.mark.parametrize("engine", ENGINES)
def test_seed_flow_enrich_router_respond(engine: str, iris_model_file: Path, iris: Any) -> None:
    fn = graphpack.new_function("serving_example_flow")
    graph = fn.set_topology("flow", engine=engine)
    graph.to("storey.Extend", name="enrich", _fn='({"tag": "something"})')
    router = graph.add_step(graphpack.serving.ModelRouter(), name="router", after="enrich")
    router.add_route("m1", class_name="ClassifierModel", model_path=str(iris_model_file))
    router.respond()
    server = fn.to_mock_server()
    try:
        result = server.test("/v2/models/m1/infer", {"inputs": two_rows(iris)})
        assert result["outputs"] == [0, 2] and result["model_name"] == "m1"
        bad = server.test("/v2/models/m9/infer", {"inputs": [[1, 2, 3, 4]]}, silent=True, get_body=False)
        assert bad.status_code == 400 and "model 'm9' does not exist" in bad.body["error"]
    finally:
        server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_flow_router_with_result_path_keeps_enrichment(engine: str) -> None:
    fn = graphpack.new_function("flow")
    graph = fn.set_topology("flow", engine=engine)
    graph.to("storey.Extend", name="enrich", _fn='({"tag": "something"})') \
        .to("*mlrun.serving.ModelRouter", name="router", input_path="req", result_path="resp").respond()
    graph["router"].add_route("m", class_name="EchoModel", model_path="unused")
    server = fn.to_mock_server()
    try:
        out = server.test("/v2/models/m/infer", {"req": {"inputs": [1]}})
        assert out["tag"] == "something" and out["resp"]["outputs"] == [1]
    finally:
        server.wait_for_completion()


def test_voting_ensemble_topology_with_normalised_weights() -> None:
    fn = graphpack.new_function("ens")
    fn.set_topology("router", "mlrun.serving.VotingEnsemble", vote_type="classification",
                    weights={"a": 2, "b": 1, "c": 1})
    fn.add_model("a", class_name="Labels", model_path="unused", label=1)
    fn.add_model("b", class_name="Labels", model_path="unused", label=2)
    fn.add_model("c", class_name="Labels", model_path="unused", label=2)
    server = fn.to_mock_server()
    out = server.test("/v2/models/VotingEnsemble/infer", {"inputs": [[0], [0]]})
    assert out["outputs"] == [1, 1]  # a weighs 0.5, b and c 0.25 each: a tie, the smaller label wins
    assert out["model_name"] == "VotingEnsemble"  # named after its class, as in MLRun
    listed = server.test("/v2/models/", method="GET")
    assert listed["weights"] == {"a": 2, "b": 1, "c": 1}  # as configured
    assert server.test("/v2/models/b/infer", {"inputs": [[0]]})["outputs"] == [2]


def test_voting_ensemble_zero_weight_fails_at_init() -> None:
    fn = graphpack.new_function("ens")
    fn.set_topology("router", "mlrun.serving.VotingEnsemble", weights={"a": 1, "b": 0})
    fn.add_model("a", class_name="Labels", model_path="unused", label=1)
    fn.add_model("b", class_name="Labels", model_path="unused", label=2)
    with pytest.raises(graphpack.GraphpackError, match="weights must be positive numbers; got b=0"):
        fn.to_mock_server()


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_run_failure_reaches_the_error_handler(engine: str) -> None:
    fn = graphpack.new_function("par")
    graph = fn.set_topology("flow", engine=engine)
    par = graph.to("*graphpack.serving.ParallelRun", name="par", extend_event=True)
    par.add_route("ok", handler="({'ok': event['x'] + 1})")
    par.add_route("bad", class_name="Failing")
    par.respond()
    par.error_handler("catcher", class_name="Catcher")
    server = fn.to_mock_server()
    try:
        out = server.test("/", {"x": 1})
        assert "feature store down" in out["caught"]
        assert "par" in out["origin"]
    finally:
        server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_run_merges_in_a_flow(engine: str) -> None:
    fn = graphpack.new_function("par")
    graph = fn.set_topology("flow", engine=engine)
    par = graph.to("*ParallelRun", name="par", extend_event=True).respond()
    par.add_route("plus", handler="({'plus': event['x'] + 1})")
    par.add_route("times", handler="({'times': event['x'] * 10})")
    server = fn.to_mock_server()
    try:
        assert server.test("/", {"x": 2}) == {"x": 2, "plus": 3, "times": 20}
    finally:
        server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_remote_step_in_a_flow_and_its_errors(engine: str, http_server: Any) -> None:
    fn = graphpack.new_function("remote")
    graph = fn.set_topology("flow", engine=engine)
    graph.to("$remote", name="call", url=f"{http_server.url}/ok", retries=0, result_path="remote").respond()
    server = fn.to_mock_server()
    try:
        out = server.test("/", {"q": 1})
        assert out["remote"]["echo"] == {"q": 1} and out["q"] == 1
    finally:
        server.wait_for_completion()

    fn = graphpack.new_function("remote")
    graph = fn.set_topology("flow", engine=engine)
    graph.to(graphpack.serving.RemoteStep(url=f"{http_server.url}/fail", retries=0), name="call").respond() \
        .error_handler("catcher", class_name="Catcher")
    server = fn.to_mock_server()
    try:
        out = server.test("/", {"q": 1})
        assert f"{http_server.url}/fail returned status 500" in out["caught"]
    finally:
        server.wait_for_completion()


def test_model_url_route_calls_the_remote_model(http_server: Any) -> None:
    fn = graphpack.new_function("proxy")
    fn.add_model("far", model_url=f"{http_server.url}/ok", retries=0)
    out = fn.to_mock_server().test("/v2/models/far/infer", {"inputs": [1]})
    assert out["echo"] == {"inputs": [1]}


@pytest.mark.parametrize("engine", ENGINES)
def test_merge_joins_branches(engine: str) -> None:
    fn = graphpack.new_function("merge")
    graph = fn.set_topology("flow", engine=engine)
    graph.to("storey.Extend", name="left", _fn='({"l": 1})')
    graph.add_step("storey.Extend", name="right", _fn='({"r": 2})', after="$prev")
    graph.add_step("storey.Extend", name="right2", _fn='({"r2": 3})', after="left")
    graph.add_step("graphpack.serving.Merge", name="join", after=["right", "right2"]).respond()
    server = fn.to_mock_server()
    try:
        out = server.test("/", {"x": 0})
        assert isinstance(out, list) and len(out) == 2
        assert {"r", "r2"} <= set(out[0]) | set(out[1])
    finally:
        server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_model_server_as_a_plain_flow_step(engine: str) -> None:
    fn = graphpack.new_function("direct")
    graph = fn.set_topology("flow", engine=engine)
    graph.to("storey.Extend", name="enrich", _fn='({"tag": 1})') \
        .to(class_name="EchoModel", name="m:v1", model_path="unused").respond()
    server = fn.to_mock_server()
    try:
        out = server.test("/v2/models/m/versions/v1/infer", {"inputs": [[1, 2]]})
        assert out["outputs"] == [[1, 2]] and out["model_name"] == "m"
        assert server.test("/", {"inputs": [3]})["outputs"] == [3]
        assert server.test("/explain", {"inputs": [[1, 2, 3]]})["outputs"] == {"features": 3}
    finally:
        server.wait_for_completion()


def test_serving_exports_and_mlrun_aliases() -> None:
    from graphpack.runtime.resolve import resolve_class

    names = ["V2ModelServer", "BaseModelRouter", "ModelRouter", "VotingEnsemble", "ParallelRun", "Merge",
             "RemoteStep", "BatchHttpRequests", "RemoteStepError"]
    for name in names:
        assert name in graphpack.serving.__all__
        obj = getattr(graphpack.serving, name)
        if name != "RemoteStepError":
            assert resolve_class(f"mlrun.serving.{name}", [], "step") is obj
