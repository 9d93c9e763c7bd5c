"""ModelRouter on its own: the V2 paths, body routing, versions and every 400 path."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from graphpack.errors import BadRequestError, NotReadyError
from graphpack.runtime.event import Event
from graphpack.runtime.response import Response
from graphpack.serving.routers import BaseModelRouter, ModelRouter
from graphpack.serving.v2_model_server import V2ModelServer

from .models import FakeRoute, model_route


class Adder(V2ModelServer):
    def predict(self, request: dict) -> list:
        return [x + self.get_param("add", 0) for x in request["inputs"]]

    def explain(self, request: dict) -> str:
        return f"adds {self.get_param('add', 0)}"

    def op_stats(self, event: Event) -> dict:
        return {"model": self.name, "n": len(event.body["inputs"])}


def make_router(**kwargs: Any) -> ModelRouter:
    routes = {
        "m1": model_route(Adder(name="m1", model=1, add=1)),
        "m2": model_route(Adder(name="m2", model=1, add=2)),
        "m2:v9": model_route(Adder(name="m2:v9", model=1, add=900)),
    }
    return ModelRouter(name="router", routes=routes, **kwargs)


@pytest.fixture(params=["plain", "post_init"])
def router(request: pytest.FixtureRequest) -> ModelRouter:
    """A router without and with post_init (which enables the short cut for known paths)."""
    router = make_router()
    if request.param == "post_init":
        router.post_init("sync")
        assert router._fast
    return router


def send(router: BaseModelRouter, path: str, body: Any = None, method: str | None = None, **attrs: Any) -> Any:
    event = Event(body, path=path, method=method or ("POST" if body is not None else "GET"), **attrs)
    return router.do_event(event)


def test_infer_predict_by_path_and_versions(router: ModelRouter) -> None:
    for _ in range(2):  # the second round hits the cached path classification
        check_infer_paths(router)


def check_infer_paths(router: ModelRouter) -> None:
    out = send(router, "/v2/models/m1/infer", {"inputs": [1, 2]}, id="e1")
    assert out.body["outputs"] == [2, 3]
    assert out.body["id"] == "e1" and out.body["model_name"] == "m1"
    assert out.path == "/v2/models/m1/infer"  # the router restores the path it rewrote
    assert send(router, "/v2/models/m2/predict", {"inputs": [1]}).body["outputs"] == [3]
    versioned = send(router, "/v2/models/m2/versions/v9/infer", {"inputs": [1]}).body
    assert versioned["outputs"] == [901]
    assert versioned["model_name"] == "m2" and "model_version" not in versioned  # as MLRun 1.12
    assert send(router, "/v2/models/m1", {"inputs": [0]}).body["outputs"] == [1]  # POST w/o op = infer


def test_body_model_and_operation_route(router: ModelRouter) -> None:
    assert send(router, "/", {"model": "m2", "inputs": [0]}).body["outputs"] == [2]
    assert send(router, "/", {"model": "m2:v9", "inputs": [0]}).body["outputs"] == [900]
    assert send(router, "/v2/models/", {"model": "m1", "inputs": [0]}).body["outputs"] == [1]
    out = send(router, "/v2/models/m1/infer", {"inputs": [0], "operation": "explain"}).body
    assert out["outputs"] == "adds 1"


def test_single_route_needs_no_model_name() -> None:
    router = ModelRouter(routes={"only": model_route(Adder(name="only", model=1, add=5))})
    assert send(router, "/", {"inputs": [1]}).body["outputs"] == [6]
    assert send(router, "/v2/models/", {"inputs": [1]}).body["outputs"] == [6]


def test_list_health_metadata_ready_explain_custom_op(router: ModelRouter) -> None:
    listed = send(router, "/v2/models/")
    assert listed.body == {"models": ["m1", "m2", "m2:v9"]}
    assert listed.terminated
    assert send(router, "/v2/models").body == {"models": ["m1", "m2", "m2:v9"]}
    health = {"name": "ModelRouter", "version": "v2", "extensions": []}
    assert send(router, "/v2/health").body == health
    assert send(router, "/v2/health/ready").body == health
    assert send(router, "/").body == health
    assert send(router, "/v2/models/m1").body == {"name": "m1", "inputs": [], "outputs": []}
    assert send(router, "/v2/models/m2/versions/v9").body["name"] == "m2"  # the versioned route
    ready = send(router, "/v2/models/m1/ready", id="r1").body
    assert isinstance(ready, Response) and ready.status_code == 200
    assert ready.body == b"Model m1 is ready (event_id = r1)"
    assert send(router, "/v2/models/m1/explain", {"inputs": [1]}).body["outputs"] == "adds 1"
    assert send(router, "/v2/models/m2/stats", {"inputs": [1, 2, 3]}).body == {"model": "m2", "n": 3}


@pytest.mark.parametrize(
    "path, body, method, message",
    [
        ("/v2/models/nope/infer", {"inputs": [1]}, "POST",
         r"model 'nope' does not exist, available models: m1 \| m2 \| m2:v9"),
        ("/v2/models/m1/versions/v5/infer", {"inputs": [1]}, "POST", r"model 'm1:v5' does not exist"),
        ("/v2/models/m1/versions", {"inputs": [1]}, "POST", "names no version"),
        ("/", {"model": "ghost", "inputs": [1]}, "POST", r"model 'ghost' does not exist"),
        ("/", {"inputs": [1]}, "POST", r"no model selected: .*available models: m1 \| m2 \| m2:v9"),
        ("/v2/models/", {"inputs": [1]}, "POST", "no model selected"),
        ("/v2/models/m1/frobnicate", {"inputs": [1]}, "POST", "unknown operation 'frobnicate' for model m1"),
        ("/v2/models/m1/infer", {"data": [1]}, "POST", 'Expected key "inputs" in request body'),
        ("/v2/models/m1/infer", {"inputs": "1,2"}, "POST", 'Expected "inputs" to be a list'),
        ("/v1/models/m1/infer", {"inputs": [1]}, "POST",
         r"unsupported protocol version v1 in path /v1/models/m1/infer: this router serves v2"),
        ("/v3/models/m1/infer", None, "GET", "unsupported protocol version v3"),
        ("/predict/m1", {"inputs": [1]}, "POST", "illegal path prefix /predict/m1, must start with /v2/models"),
        ("/v2/models/m1/infer", b"\x00not json", "POST", "Unrecognized request format"),
    ],
)
def test_bad_requests_are_400_and_name_the_problem(
    router: ModelRouter, path: str, body: Any, method: str, message: str
) -> None:
    for _ in range(2):
        with pytest.raises(BadRequestError, match=message) as info:
            send(router, path, body, method)
        assert info.value.status_code == 400


def test_short_cut_is_off_when_hooks_or_paths_are_customised() -> None:
    class Hooked(ModelRouter):
        def preprocess(self, event: Event) -> Event:
            return event

    hooked = Hooked(routes={})
    hooked.post_init("sync")
    with_path = make_router(result_path="r")
    with_path.post_init("sync")
    assert not hooked._fast and not with_path._fast


def test_not_ready_model_is_503() -> None:
    gate = threading.Event()

    class Slow(Adder):
        def load(self) -> None:
            gate.wait(30)

    slow = Slow(name="slow")
    slow.post_init("async")
    router = ModelRouter(routes={"slow": FakeRoute("slow", slow)})
    try:
        with pytest.raises(NotReadyError, match="model slow is not ready") as info:
            send(router, "/v2/models/slow/infer", {"inputs": [1]})
        assert info.value.status_code == 503
    finally:
        gate.set()
    assert slow.wait_until_ready(5)
    assert send(router, "/v2/models/slow/infer", {"inputs": [1]}).body["outputs"] == [1]


def test_string_body_image_and_data_url(tmp_path: Any) -> None:
    seen: list[Any] = []

    def capture(event: Event) -> dict:
        seen.append(event.body)
        return {"ok": True}

    router = ModelRouter(routes={"img": FakeRoute("img", fn=capture)})
    send(router, "/v2/models/img/infer", '{"inputs": [1]}')
    assert seen[-1] == {"inputs": [1]}
    send(router, "/v2/models/img/infer", b"\x89PNG...", content_type="image/png")
    assert seen[-1]["inputs"][0].read() == b"\x89PNG..."
    blob = tmp_path / "pic.bin"
    blob.write_bytes(b"pixels")
    send(router, "/v2/models/img/infer", {"data_url": str(blob), "extra": 1})
    assert seen[-1]["inputs"][0].read() == b"pixels" and seen[-1]["extra"] == 1


def test_input_and_result_path_and_custom_prefix() -> None:
    router = make_router(input_path="req", result_path="resp")
    out = send(router, "/v2/models/m1/infer", {"req": {"inputs": [1]}, "tag": "x"}).body
    assert out["tag"] == "x" and out["resp"]["outputs"] == [2]
    custom = make_router(url_prefix="/api/models", health_prefix="/api/health")
    assert custom.do_event(Event({"inputs": [1]}, path="/api/models/m1/infer")).body["outputs"] == [2]
    assert custom.do_event(Event(None, path="/api/health", method="GET")).body["version"] == "v2"
    with pytest.raises(BadRequestError, match="must start with /api/models"):
        custom.do_event(Event({"inputs": [1]}, path="/v2/models/m1/infer"))


def test_pre_and_post_process_hooks_see_the_event() -> None:
    class Tagged(ModelRouter):
        def preprocess(self, event: Event) -> Event:
            event.body["inputs"] = [x * 10 for x in event.body["inputs"]]
            return event

        def postprocess(self, event: Event) -> Event:
            event.body["router"] = self.name
            return event

    router = Tagged(name="tagged", routes={"m": model_route(Adder(name="m", model=1, add=1))})
    out = send(router, "/v2/models/m/infer", {"inputs": [1]}).body
    assert out["outputs"] == [11] and out["router"] == "tagged"


def test_failing_route_leaves_the_request_path(router: ModelRouter) -> None:
    event = Event({"inputs": [1]}, path="/v2/models/m1/nope")
    for _ in range(2):
        with pytest.raises(BadRequestError):
            router.do_event(event)
        assert event.path == "/v2/models/m1/nope"
