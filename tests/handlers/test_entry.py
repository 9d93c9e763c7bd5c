"""The entry glue under nuclio-sdk's real Context/Event and Response.from_entrypoint_output."""
from __future__ import annotations

import json
import sys

import pytest

import graphpack
from graphpack.errors import GraphpackError
from graphpack.handlers import entry

from .nuclio_harness import (
    body_of,
    call,
    decode_event,
    encode_event,
    make_context,
    respond,
)

JSON = "application/json"


def flow_spec(engine: str = "sync", respond_step: bool = True, **params) -> dict:
    fn = graphpack.new_function("answer", project="proj")
    graph = fn.set_topology("flow", engine=engine)
    step = graph.to(class_name="Answer", name="answer")
    if respond_step:
        step.respond()
    fn.spec.parameters = params
    return fn.serving_spec()


@pytest.fixture(params=["sync", "async"])
def flow(request, started):
    return started(flow_spec(request.param, threshold=0.5))


def test_json_body_round_trip(flow):
    response = call(entry, flow, body=b'{"a": [1, 2]}', content_type=JSON)
    assert response["status_code"] == 200
    assert response["content_type"] == JSON
    assert body_of(response) == {"echo": {"a": [1, 2]}}


def test_text_body_reaches_the_step_as_str(flow):
    """As in the mock server (``test(path, "plain words")``); found under the real processor."""
    response = call(entry, flow, body=b"plain words", content_type="text/plain")
    assert (response["status_code"], body_of(response)) == (200, {"echo": "plain words"})


def test_non_text_body_reaches_the_step_as_bytes(flow):
    response = call(entry, flow, body=b"plain words", content_type="application/octet-stream")
    assert (response["status_code"], body_of(response)) == (200, {"raw": "plain words"})


def test_binary_response_is_base64_encoded(flow):
    response = call(entry, flow, body=b'{"op": "bytes"}', content_type=JSON)
    assert response["status_code"] == 200
    assert response["body_encoding"] == "base64"
    assert body_of(response) == b"\x00\x01binary"


def test_text_response(flow):
    response = call(entry, flow, body=b'{"op": "text"}', content_type=JSON)
    assert (response["status_code"], response["content_type"], response["body"]) == (200, "text/plain", "hello")


def test_list_result_is_one_json_body_not_a_batch(flow):
    response = call(entry, flow, body=b'{"op": "list"}', content_type=JSON)
    assert response["content_type"] == JSON
    assert body_of(response) == [1, 2, 3]


def test_none_result_is_an_empty_body_not_the_text_none(flow):
    response = call(entry, flow, body=b'{"op": "none"}', content_type=JSON)
    assert response["status_code"] == 200
    assert response["body"] == ""


def test_step_response_object_keeps_status_headers_and_type(flow):
    response = call(entry, flow, body=b'{"op": "response"}', content_type=JSON)
    assert response["status_code"] == 201
    assert response["headers"] == {"X-Test": "1"}
    assert body_of(response) == {"custom": True}


def test_invalid_json_is_400(flow):
    response = call(entry, flow, body=b"{not json", content_type=JSON)
    assert response["status_code"] == 400
    assert "not valid JSON" in body_of(response)["error"]


@pytest.mark.parametrize("op, status", [("bad", 400), ("notready", 503), ("teapot", 418)])
def test_http_errors_keep_their_status(flow, op, status):
    response = call(entry, flow, body=json.dumps({"op": op}).encode(), content_type=JSON)
    assert response["status_code"] == status
    assert set(body_of(response)) >= {"error"}


def test_user_exception_is_500_with_step_and_no_traceback(flow):
    response = call(entry, flow, body=b'{"op": "fail"}', content_type=JSON)
    assert response["status_code"] == 500
    body = body_of(response)
    assert body == {"error": "ValueError: boom", "step": "answer"}
    assert "Traceback" not in response["body"]


def test_parameters_reach_the_steps(flow):
    response = call(entry, flow, body=b'{"op": "param"}', content_type=JSON)
    assert body_of(response) == {"threshold": 0.5, "fn": ""}


def test_empty_body_get(flow):
    response = call(entry, flow, body=b"", method="GET")
    assert (response["status_code"], body_of(response)) == (200, {"echo": None})


def test_raw_event_strings(flow):
    """With NUCLIO_PYTHON_DECODE_EVENT_STRINGS off, headers, path and kind arrive as bytes."""
    response = call(entry, flow, decode_strings=False, body=b'{"x": 1}', content_type="",
                    headers={"X-A": "b"})
    assert (response["status_code"], body_of(response)) == (200, {"echo": {"x": 1}})


def test_async_flow_without_responder_answers_with_the_event_id(started):
    context = started(flow_spec("async", respond_step=False))
    response = call(entry, context, body=b'{"a": 1}', content_type=JSON,
                    headers={"graphpack-event-id": "ev-1"})
    assert (response["status_code"], body_of(response)) == (200, {"id": "ev-1"})


def test_cron_event(started):
    context = started(flow_spec("sync"), kind="cron")
    event = decode_event(encode_event(body=b'{"op": "retrain"}', kind="cron", name="nightly", method="",
                                      path="", headers={"Content-Type": "application/json"}, timestamp=0))
    assert event.trigger.kind == "cron"
    graph_event = graphpack.handlers.from_nuclio(event, context)
    assert (graph_event.path, graph_event.method, graph_event.trigger) == ("/", "POST", "cron")
    response = respond(entry.handler(context, event))
    assert (response["status_code"], body_of(response)) == (200, {"echo": {"op": "retrain"}})


def test_stream_event_unwraps_the_queue_record_and_resets_the_path(started):
    from graphpack.queues import record as wire
    from graphpack.runtime.event import Event

    context = started(flow_spec("sync"), kind="v3ioStream")
    pushed = Event({"k": 1}, "ev-9", "/some/path")
    data = wire.encode(wire.wrap(pushed))
    event = decode_event(encode_event(body=data, kind="v3ioStream", name="stream", path="/other",
                                      offset=42, shard_id=3, topic="/q1"))
    graph_event = graphpack.handlers.from_nuclio(event, context)
    assert (graph_event.body, graph_event.id, graph_event.path) == ({"k": 1}, "ev-9", "/")
    assert (graph_event.offset, graph_event.shard_id, graph_event.stream_path) == (42, 3, "/q1")
    response = respond(entry.handler(context, event))
    assert body_of(response) == {"echo": {"k": 1}}


def test_stream_event_with_a_bare_body(started):
    context = started(flow_spec("sync"), kind="kafka-cluster")
    response = call(entry, context, body=b"[1, 2]", kind="kafka-cluster", name="k")
    assert body_of(response) == {"echo": [1, 2]}


def test_router_graph(started):
    code = '''
from graphpack.serving import V2ModelServer


class Doubler(V2ModelServer):
    def load(self):
        self.model = 2

    def predict(self, request):
        return [x * self.model for x in request["inputs"]]
'''
    fn = graphpack.new_function("models", project="proj")
    fn.set_topology("router")
    fn.add_model("m1", class_name="Doubler", model_path="/models/m1")
    context = started(fn.serving_spec(), code=code)
    ok = call(entry, context, body=b'{"inputs": [1, 2]}', content_type=JSON, path="/v2/models/m1/infer")
    assert ok["status_code"] == 200 and body_of(ok)["outputs"] == [2, 4]
    missing = call(entry, context, body=b'{"inputs": [1]}', content_type=JSON, path="/v2/models/nope/infer")
    assert missing["status_code"] == 400


def test_spec_env_fallback(function_dir, monkeypatch, tmp_path):
    directory, module = function_dir(flow_spec("sync"))
    (directory / "spec.json").unlink()
    monkeypatch.setenv("GRAPHPACK_SPEC", json.dumps(flow_spec("sync", threshold=7)))
    context, _ = make_context()
    entry.init_context(context, modules=[module], spec_dir=str(directory))
    assert body_of(call(entry, context, body=b'{"op": "param"}', content_type=JSON))["threshold"] == 7


def test_spec_file_env_wins(function_dir, monkeypatch, tmp_path):
    directory, module = function_dir(flow_spec("sync", threshold=1))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(flow_spec("sync", threshold=2)))
    monkeypatch.setenv("GRAPHPACK_SPEC_FILE", str(other))
    context, _ = make_context()
    entry.init_context(context, modules=[module], spec_dir=str(directory))
    assert body_of(call(entry, context, body=b'{"op": "param"}', content_type=JSON))["threshold"] == 2


def test_no_spec_is_a_clear_error(function_dir, tmp_path):
    directory, module = function_dir(flow_spec("sync"))
    (directory / "spec.json").unlink()
    context, stream = make_context()
    with pytest.raises(GraphpackError, match="no serving spec found"):
        entry.init_context(context, modules=[module], spec_dir=str(directory))
    assert "failed to initialise" in stream.getvalue()


def test_handler_before_init_is_503():
    entry.reset()
    context, _ = make_context()
    response = respond(entry.handler(context, decode_event(encode_event(body=b"{}"))))
    assert response["status_code"] == 503


def test_server_is_kept_on_user_data(flow):
    assert isinstance(flow.user_data.graph_server, graphpack.GraphServer)


def test_entry_imports_only_the_runtime():
    code = ("import sys, graphpack.handlers.entry; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jinja2', 'click', 'docker', 'boto3', 'httpx', 'nuclio', 'graphviz') "
            "or m.startswith(('graphpack.packager', 'graphpack.templates', 'graphpack.cli'))); print(bad)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_next_to_the_entry_when_the_spec_file_env_points_nowhere(function_dir, monkeypatch):
    """Under Nuclio's own builder the code lands in /opt/nuclio, not where GRAPHPACK_SPEC_FILE points."""
    directory, module = function_dir(flow_spec("sync", threshold=3))
    monkeypatch.setenv("GRAPHPACK_SPEC_FILE", str(directory / "absent" / "spec.json"))
    context, _ = make_context()
    entry.init_context(context, modules=[module], spec_dir=str(directory))
    assert body_of(call(entry, context, body=b'{"op": "param"}', content_type=JSON))["threshold"] == 3


def test_str_body_headers_fields_and_event_id_header(flow):
    import nuclio_sdk

    event = nuclio_sdk.Event(body='{"s": "x"}', content_type="application/json", path="/p", method="PUT",
                             headers={"Graphpack-Event-Id": "abc", "X-K": "v"}, fields={"q": "1"},
                             trigger=nuclio_sdk.TriggerInfo("http", "http"))
    graph_event = graphpack.handlers.from_nuclio(event, flow)
    assert (graph_event.id, graph_event.path, graph_event.method) == ("abc", "/p", "PUT")
    assert graph_event.fields == {"q": "1"} and graph_event.get_header("x-k") == "v"
    response = respond(entry.handler(flow, event))
    assert body_of(response) == {"echo": {"s": "x"}}


ASYNC_STEPS = '''
import asyncio


class Slow:
    async def do(self, body):
        await asyncio.sleep(0.01)
        return {"slow": body}
'''


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_async_step_called_from_the_wrappers_running_loop(started, engine):
    """Nuclio's wrapper calls a sync handler from inside its own running event loop."""
    import asyncio

    fn = graphpack.new_function("slow", project="proj")
    fn.set_topology("flow", engine=engine).to(class_name="Slow", name="slow").respond()
    context = started(fn.serving_spec(), code=ASYNC_STEPS)
    event = decode_event(encode_event(body=b'{"a": 1}', content_type=JSON))

    async def wrapper_loop():
        return entry.handler(context, event)

    for _ in range(2):
        response = respond(asyncio.run(wrapper_loop()))
        assert (response["status_code"], body_of(response)) == (200, {"slow": {"a": 1}})
    assert body_of(respond(entry.handler(context, event))) == {"slow": {"a": 1}}  # and without a loop


def test_termination_and_drain_callbacks_finish_background_events(started):
    """An async graph without a responder answers at once; SIGUSR2/SIGUSR1 callbacks wait for it."""
    code = '''
import asyncio

DONE = []


class Later:
    async def do(self, body):
        await asyncio.sleep(0.2)
        DONE.append(body)
'''
    fn = graphpack.new_function("bg", project="proj")
    fn.set_topology("flow", engine="async").to(class_name="Later", name="later")
    context = started(fn.serving_spec(), code=code)
    done = next(m.DONE for name, m in list(sys.modules.items()) if name.startswith("gp_user_") and hasattr(m, "DONE"))
    for value, callback in ((1, context.platform._drain_callback), (2, context.platform._termination_callback)):
        response = call(entry, context, body=json.dumps({"v": value}).encode(), content_type=JSON)
        assert set(body_of(response)) == {"id"} and {"v": value} not in done
        callback()
        assert {"v": value} in done


def test_under_nuclio_the_callers_traceparent_names_the_log_lines_and_the_response(function_dir):
    """Nuclio's logger gets the trace as a structured field; the processor's own metrics are its
    business: the entry module records none (graphpack.runtime.metrics stays off)."""
    from graphpack.runtime import metrics

    directory, module = function_dir(flow_spec())
    context, stream = make_context()
    entry.init_context(context, modules=[module], spec_dir=str(directory))
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = call(entry, context, body=b'{"op": "fail"}', content_type=JSON, headers={"traceparent": traceparent})
    assert response["status_code"] == 500 and response["headers"]["traceparent"] == traceparent
    failures = [json.loads(line) for line in stream.getvalue().splitlines() if "failed" in line]
    assert failures and all(f["with"]["trace_id"] == traceparent[3:35] for f in failures), stream.getvalue()
    plain = call(entry, context, body=b'{"a": 1}', content_type=JSON)
    assert "traceparent" not in plain["headers"]  # nothing used a trace: none made, none sent
    assert metrics.recorder is None
