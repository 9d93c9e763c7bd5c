"""MLRun's Nuclio hook on graphpack (issue 16): a function MLRun generated, with ``mlrun`` replaced by
``graphpack`` in its entry module, serves the same requests as MLRun's own server.

The real mlrun package (the differential test's venv) builds the graph, writes the serving spec
exactly as it would ship it in ``SERVING_SPEC_ENV``, gives nuclio-jupyter's entry-module footer,
and answers the requests with its mock server. graphpack then runs the entry module (user code +
footer, ``mlrun`` -> ``graphpack``) under nuclio-sdk's real Context and Event, and must answer alike.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from graphpack.errors import GraphpackError
from graphpack.runtimes import from_mlrun_spec, nuclio_init_hook
from tests.handlers.nuclio_harness import body_of, decode_event, encode_event, make_context, respond

from . import mlrun_venv

USER_CODE = '''
import {api}
from typing import List


class Inc:
    def __init__(self, context=None, name=None, by=1, **kw):
        self.by = by

    def do(self, x):
        return x if x is None else {{**x, "v": x.get("v", 0) + self.by}}


class Doubler({api}.serving.V2ModelServer):
    def load(self):
        self.model = 2

    def predict(self, body: dict) -> List:
        return [row * self.model for row in body["inputs"]]
'''

BUILD = '''
fn = {api}.new_function("hooked", project="proj", kind="serving")
graph = fn.set_topology("flow", engine="{engine}")
graph.to(handler="(event)", name="enrich").to(class_name="Inc", name="inc", by=2) \\
     .to("*", name="router").respond()
fn.add_model("m1", class_name="Doubler", model_path="unused", router_step="router")
fn.spec.parameters = {{"p": 1}}
'''

REQUESTS = [
    {"path": "/v2/models/m1/infer", "body": {"inputs": [1, 2], "v": 1}},
    {"path": "/v2/models/", "method": "GET"},
    {"path": "/v2/models/nope/infer", "body": {"inputs": [1]}},
]

MLRUN_SIDE = USER_CODE.format(api="mlrun") + '''
import json, nuclio.build
results = {}
for engine in ("sync", "async"):
''' + "\n".join("    " + line for line in BUILD.format(api="mlrun", engine="{engine}").replace(
    '"{engine}"', "engine").splitlines()) + '''
    server = fn.to_mock_server()
    answers = []
    for request in REQUESTS:
        answer = server.test(silent=True, event_id="ev", **request)
        if hasattr(answer, "status_code"):
            answer = {"status": answer.status_code}
        answers.append(answer)
    server.wait_for_completion()
    results[engine] = {"spec": fn._get_serving_spec(), "answers": answers}
results["footer"] = nuclio.build.mlrun_footer.format("serving_v2")
print("@@MLRUN@@" + json.dumps(results, default=str))
'''


@pytest.fixture(scope="module")
def mlrun_side() -> dict:
    try:
        python = mlrun_venv.ensure()
    except (mlrun_venv.Unavailable, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the mlrun {mlrun_venv.MLRUN_VERSION} venv is missing and cannot be created: {exc}")
    code = f"REQUESTS = {REQUESTS!r}\n" + MLRUN_SIDE
    proc = subprocess.run([str(python), "-P", "-c", code], capture_output=True, text=True,
                          env=mlrun_venv.child_env(), timeout=300, cwd="/")
    for line in proc.stdout.splitlines():
        if line.startswith("@@MLRUN@@"):
            return json.loads(line[len("@@MLRUN@@"):])
    raise RuntimeError(f"the mlrun side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _entry_module(tmp_path: Path, footer: str) -> Any:
    """The entry module MLRun generates (user code + footer), with mlrun -> graphpack."""
    source = (USER_CODE.format(api="mlrun") + footer).replace("mlrun", "graphpack")
    path = tmp_path / "hooked_entry.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("hooked_entry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hooked_entry"] = module
    spec.loader.exec_module(module)
    return module


def _call(module: Any, context: Any, request: dict) -> Any:
    body = request.get("body")
    raw = json.dumps(body).encode() if body is not None else b""
    event = decode_event(encode_event(raw, "application/json" if raw else "", method=request.get("method", "POST"),
                                      path=request["path"], headers={"MLRUN-EVENT-ID": "ev"}))
    response = respond(asyncio.run(module.handler(context, event)))
    if response["status_code"] >= 300:
        return {"status": response["status_code"]}
    return body_of(response)


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<timestamp>" if k == "timestamp" else _masked(v) for k, v in value.items()
                if k != "background_task_state"}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_mlrun_generated_function_serves_the_same_answers(engine: str, mlrun_side: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    side = mlrun_side[engine]
    monkeypatch.setenv("SERVING_SPEC_ENV", side["spec"])
    monkeypatch.delenv("SERVING_CURRENT_FUNCTION", raising=False)
    module = _entry_module(tmp_path, mlrun_side["footer"])
    context, _ = make_context()
    try:
        module.init_context(context)
        assert callable(context.mlrun_handler)
        answers = [_call(module, context, request) for request in REQUESTS]
    finally:
        context._server.wait_for_completion()
        sys.modules.pop("hooked_entry", None)
    mlrun_answers = _masked(side["answers"])
    assert "status" not in mlrun_answers[0] and "models" in mlrun_answers[1]  # MLRun answered them
    for ours, theirs in zip(_masked(answers), mlrun_answers, strict=True):
        if "status" in theirs:  # a failure: both fail (status codes differ on purpose, DESIGN §4.4)
            assert "status" in ours and ours["status"] >= 400
        else:
            assert ours == theirs
    assert answers[0]["outputs"] == [2, 4] and answers[0]["id"] == "ev"


def test_spec_fields_graphpack_has_no_use_for_are_left_out(mlrun_side: dict) -> None:
    spec = from_mlrun_spec(json.loads(mlrun_side["async"]["spec"]))
    assert set(spec) <= {"function_uri", "version", "parameters", "graph", "load_mode", "functions",
                         "graph_initializer", "error_stream", "secret_sources", "default_content_type", "verbose"}
    assert spec["function_uri"] == "proj/hooked" and spec["parameters"] == {"p": 1}
    router = spec["graph"]["steps"]["router"]
    assert "class_name" not in router and "name" not in router and router["routes"]["m1"]["class_name"] == "Doubler"


def test_hook_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    context, _ = make_context()
    with pytest.raises(GraphpackError, match="kind 'mlrun' is not supported"):
        nuclio_init_hook(context, {}, "mlrun")
    monkeypatch.delenv("SERVING_SPEC_ENV", raising=False)
    with pytest.raises(GraphpackError, match=r"no serving spec: neither /tmp/mlrun/serving-conf/serving_spec.json "
                                             r"nor \$SERVING_SPEC_ENV is set"):
        nuclio_init_hook(context, {}, "serving_v2")
