"""V2ModelServer on its own: lifecycle, operations, validation, parameters and get_model."""
from __future__ import annotations

import json
import pickle
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from graphpack.errors import BadRequestError, GraphpackError, HTTPError, NotReadyError
from graphpack.runtime.context import GraphContext
from graphpack.runtime.event import Event
from graphpack.runtime.resources import clear_cache
from graphpack.runtime.response import Response
from graphpack.serving.v2_model_server import V2ModelServer
from graphpack.serving.v2_model_server import model_op_from_path, split_version

from .models import ClassifierModel


class Doubler(V2ModelServer):
    def predict(self, request: dict) -> list:
        return [x * 2 for x in request["inputs"]]

    def explain(self, request: dict) -> dict:
        return {"why": [f"{x} doubled" for x in request["inputs"]]}

    def op_echo(self, event: Event) -> dict:
        return {"echo": event.body, "path": event.path}


def infer(server: V2ModelServer, body: Any, path: str = "/infer", method: str = "POST", **attrs: Any) -> Any:
    return server.do_event(Event(body, path=path, method=method, **attrs)).body


def test_iris_classifier_infers_two_rows(context: GraphContext, iris_model_file: Path, iris: Any) -> None:
    server = ClassifierModel(context, "iris", model_path=str(iris_model_file))
    server.post_init("sync")
    assert server.ready
    rows = [iris["data"][0].tolist(), iris["data"][149].tolist()]
    event = Event({"inputs": rows}, id="ev1", path="/infer")
    body = server.do_event(event).body
    assert body["outputs"] == [0, 2]
    assert body["id"] == "ev1"
    assert body["model_name"] == "iris"
    assert "model_version" not in body  # as MLRun 1.12
    assert "timestamp" in body


def test_request_id_and_version_from_name() -> None:
    server = Doubler(name="dbl:v3", model=object())
    assert (server.name, server.version) == ("dbl", "v3")
    body = infer(server, {"inputs": [1, 2], "id": "req-7"})
    assert body["id"] == "req-7"
    assert "model_version" not in body  # the version routes; MLRun 1.12 does not echo it
    assert body["outputs"] == [2, 4]


def test_empty_op_posts_infer_and_predict_alias() -> None:
    server = Doubler(name="d", model=1)
    assert infer(server, {"inputs": [5]}, path="/")["outputs"] == [10]
    assert infer(server, {"inputs": [5]}, path="/predict")["outputs"] == [10]
    assert infer(server, {"inputs": [5], "operation": "predict"}, path="/")["outputs"] == [10]
    assert infer(server, {"inputs": [5]}, path="/v2/models/d/versions/1/infer")["outputs"] == [10]


def test_string_body_is_decoded() -> None:
    server = Doubler(name="d", model=1)
    assert infer(server, json.dumps({"inputs": [1]}))["outputs"] == [2]
    with pytest.raises(BadRequestError, match="json"):
        infer(server, "not json{")


def test_model_given_means_ready_and_load_not_called() -> None:
    calls = []

    class Never(Doubler):
        def load(self) -> None:
            calls.append(1)

    server = Never(name="n", model={"w": 1})
    server.post_init("sync")
    assert server.ready and calls == []


def test_load_once_sync_and_failure_fails_init() -> None:
    calls = []

    class Counted(Doubler):
        def load(self) -> None:
            calls.append(1)

    server = Counted(name="c")
    server.post_init("sync")
    server.post_init("sync")
    assert calls == [1]

    class Broken(Doubler):
        def load(self) -> None:
            raise OSError("disk gone")

    with pytest.raises(RuntimeError, match="failed to load model b: OSError: disk gone"):
        Broken(name="b").post_init("sync")


def test_async_load_answers_not_ready_until_loaded() -> None:
    gate = threading.Event()

    class Slow(Doubler):
        def load(self) -> None:
            gate.wait(10)

    server = Slow(name="slow")
    server.post_init("async")
    with pytest.raises(NotReadyError, match="model slow is not ready") as info:
        infer(server, {"inputs": [1]})
    assert info.value.status_code == 503
    with pytest.raises(NotReadyError):
        infer(server, None, path="/ready", method="GET")
    gate.set()
    assert server.wait_until_ready(5)
    assert infer(server, {"inputs": [1]})["outputs"] == [2]


def test_load_mode_class_arg_selects_async() -> None:
    gate = threading.Event()

    class Slow(Doubler):
        def load(self) -> None:
            gate.wait(10)

    server = Slow(name="s", load_mode="async")
    server.post_init("sync")  # returns at once, the load runs in the background
    assert not server.ready
    gate.set()
    assert server.wait_until_ready(5)


def test_async_load_failure_is_reported_per_request() -> None:
    class Broken(Doubler):
        def load(self) -> None:
            raise ValueError("bad weights")

    server = Broken(name="b")
    server.post_init("async")
    assert not server.wait_until_ready(5)
    with pytest.raises(RuntimeError, match="model b failed to load: ValueError: bad weights"):
        infer(server, {"inputs": [1]})


def test_stream_trigger_waits_for_async_load() -> None:
    gate = threading.Event()

    class Slow(Doubler):
        def load(self) -> None:
            gate.wait(10)

    server = Slow(name="s")
    server.post_init("async")
    threading.Timer(0.2, gate.set).start()
    trigger = type("Trigger", (), {"kind": "v3ioStream", "name": "stream"})()
    assert infer(server, {"inputs": [3]}, trigger=trigger)["outputs"] == [6]


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, 'Expected key "inputs" in request body'),
        ({"data": [1]}, 'Expected key "inputs" in request body'),
        ({"inputs": 5}, 'Expected "inputs" to be a list'),
        ({"inputs": {"a": 1}}, 'Expected "inputs" to be a list'),
        (None, 'Expected key "inputs" in request body'),
        ([1, 2], 'Expected key "inputs" in request body'),
    ],
)
def test_validate_rejects_bad_inputs(body: Any, message: str) -> None:
    server = Doubler(name="d", model=1)
    with pytest.raises(BadRequestError, match=message) as info:
        infer(server, body)
    assert info.value.status_code == 400
    with pytest.raises(BadRequestError, match=message):
        infer(server, body, path="/explain")


def test_explain_and_default_explain_is_501() -> None:
    body = infer(Doubler(name="d", model=1), {"inputs": [1]}, path="/explain")
    assert body["outputs"] == {"why": ["1 doubled"]}
    assert "timestamp" not in body

    class Plain(V2ModelServer):
        def predict(self, request: dict) -> list:
            return request["inputs"]

    with pytest.raises(HTTPError, match="does not implement explain") as info:
        infer(Plain(name="p", model=1), {"inputs": [1]}, path="/explain")
    assert info.value.status_code == 501


def test_custom_op_and_unknown_op() -> None:
    server = Doubler(name="d", model=1)
    assert infer(server, {"x": 1}, path="/echo") == {"echo": {"x": 1}, "path": "/echo"}
    with pytest.raises(BadRequestError, match="unknown operation 'nope' for model d"):
        infer(server, {"inputs": [1]}, path="/nope")
    with pytest.raises(BadRequestError, match="unknown operation 'ready'"):
        infer(server, {"inputs": [1]}, path="/ready", method="POST")


def test_pre_and_post_process_hooks() -> None:
    class Hooked(Doubler):
        def preprocess(self, request: dict, operation: str) -> dict:
            return {"inputs": [x + 1 for x in request["raw"]]}

        def postprocess(self, response: dict) -> dict:
            response["outputs"] = sum(response["outputs"])
            return response

    assert infer(Hooked(name="h", model=1), {"raw": [1, 2]})["outputs"] == 10


def test_metadata_and_ready_get() -> None:
    server = Doubler(name="d:v2", model=1)
    assert infer(server, None, path="/", method="GET") == {
        "name": "d", "inputs": [], "outputs": []}
    ready = infer(server, None, path="/ready", method="GET", id="e9")
    assert isinstance(ready, Response) and ready.status_code == 200
    assert ready.body == b"Model d is ready (event_id = e9)"


def test_input_and_result_paths() -> None:
    server = Doubler(name="d", model=1, input_path="req", result_path="resp")
    body = infer(server, {"req": {"inputs": [4]}, "keep": True})
    assert body["keep"] is True
    assert body["resp"]["outputs"] == [8]


def test_get_param_class_args_then_graph_params(context: GraphContext) -> None:
    server = Doubler(context, "d", model=1, threshold=0.9)
    assert server.get_param("threshold") == 0.9
    assert server.get_param("shared") == "graph"
    assert server.get_param("missing", 7) == 7
    assert Doubler(name="x", model=1).get_param("shared", "dflt") == "dflt"


def test_get_model_file_directory_and_errors(tmp_path: Path, iris_model_file: Path) -> None:
    server = Doubler(name="d", model_path=str(iris_model_file))
    local, extra = server.get_model(".pkl")
    assert local == str(iris_model_file) and extra == {}
    with pytest.raises(GraphpackError, match="does not end with '.onnx'"):
        server.get_model(".onnx")

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(iris_model_file, folder / "clf.pkl")
    (folder / "labels.json").write_text('["setosa", "versicolor", "virginica"]')
    (folder / "model_spec.json").write_text(json.dumps({
        "inputs": [{"name": "sepal_length"}, {"name": "sepal_width"}],
        "outputs": [{"name": "label"}],
        "parameters": {"threshold": 0.25},
    }))
    server = Doubler(name="d", model_path=str(folder))
    local, extra = server.get_model(".pkl")
    assert local == str(folder / "clf.pkl")
    assert pickle.loads(Path(local).read_bytes()).predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
    assert list(extra) == ["labels.json"]
    assert json.loads(extra["labels.json"].get()) == ["setosa", "versicolor", "virginica"]
    assert server.get_param("threshold") == 0.25
    assert server.get_metadata()["inputs"] == [{"name": "sepal_length"}, {"name": "sepal_width"}]
    with pytest.raises(GraphpackError, match=r"expected one file ending with '.h5' in .*found clf.pkl, labels.json"):
        server.get_model(".h5")
    with pytest.raises(GraphpackError, match="has no model_path"):
        Doubler(name="d").get_model(".pkl")


def test_get_model_directory_choice(tmp_path: Path) -> None:
    for name in ("model.pkl", "scaler.pkl", "other.bin"):
        (tmp_path / name).write_bytes(name.encode())
    server = Doubler(name="d", model_path=str(tmp_path))
    local, extra = server.get_model(".pkl")  # model<suffix> wins over other matches
    assert local.endswith("model.pkl") and sorted(extra) == ["other.bin", "scaler.pkl"]
    (tmp_path / "model.pkl").unlink()
    (tmp_path / "clf.pkl").write_bytes(b"c")
    with pytest.raises(GraphpackError, match=r"expected one file ending with '.pkl' .*clf.pkl, other.bin, scaler.pkl"):
        server.get_model(".pkl")
    import yaml

    (tmp_path / "model_spec.yaml").write_text(yaml.safe_dump({
        "kind": "model", "spec": {"model_file": "clf.pkl", "outputs": [{"name": "y"}], "parameters": {"k": 3}}}))
    local, extra = server.get_model(".pkl")
    assert local.endswith("clf.pkl") and "model_spec.yaml" not in extra
    assert server.get_param("k") == 3 and server.get_metadata()["outputs"] == [{"name": "y"}]
    (tmp_path / "model_spec.yaml").write_text(yaml.safe_dump({"model_file": "gone.pkl"}))
    with pytest.raises(GraphpackError, match="names model_file 'gone.pkl', which is not in"):
        server.get_model(".pkl")


def test_infer_dict_orders_features(tmp_path: Path) -> None:
    class Echo(V2ModelServer):
        def predict(self, request: dict) -> list:
            return request["inputs"]

    (tmp_path / "m.pkl").write_bytes(b"x")
    (tmp_path / "model_spec.json").write_text(json.dumps({"inputs": [{"name": "a"}, {"name": "b"}]}))
    server = Echo(name="e", model_path=str(tmp_path), model=1)
    server.get_model(".pkl")
    assert infer(server, {"inputs": [{"b": 2, "a": 1}, {"a": 3, "b": 4}]}, path="/infer_dict")["outputs"] == [
        [1, 2], [3, 4]]
    with pytest.raises(BadRequestError, match=r"missing features \['b'\]"):
        infer(server, {"inputs": [{"a": 1}]}, path="/predict_dict")


def test_get_model_from_s3(s3_client: Any, s3_bucket: str, s3_env: str, iris_model_file: Path, iris: Any) -> None:
    clear_cache()
    s3_client.put_object(Bucket=s3_bucket, Key="models/iris/model.pkl", Body=iris_model_file.read_bytes())
    s3_client.put_object(Bucket=s3_bucket, Key="models/iris/notes.txt", Body=b"trained on iris")
    server = ClassifierModel(name="s3m", model_path=f"s3://{s3_bucket}/models/iris/model.pkl")
    server.post_init("sync")
    assert infer(server, {"inputs": [iris["data"][0].tolist()]})["outputs"] == [0]

    folder = ClassifierModel(name="s3dir", model_path=f"s3://{s3_bucket}/models/iris/")
    local, extra = folder.get_model(".pkl")
    assert Path(local).read_bytes() == iris_model_file.read_bytes()
    assert extra["notes.txt"].get() == b"trained on iris"


def test_get_model_from_http(http_server: Any, iris_model_file: Path) -> None:
    data = iris_model_file.read_bytes()
    http_server.script = lambda method, path, body: (200, data, 0)
    server = ClassifierModel(name="web", model_path=f"{http_server.url}/models/iris/model.pkl")
    server.post_init("sync")
    assert server.ready
    assert infer(server, {"inputs": [[6.3, 3.3, 6.0, 2.5]]})["outputs"] == [2]


def test_path_helpers() -> None:
    assert split_version("m:v1") == ("m", "v1")
    assert split_version("m") == ("m", "")
    assert model_op_from_path("/infer") == "infer"
    assert model_op_from_path("/v2/models/m/infer") == "infer"
    assert model_op_from_path("/v2/models/m/versions/2/explain") == "explain"
    assert model_op_from_path("/v2/models/m") == ""
    assert model_op_from_path("/") == ""
