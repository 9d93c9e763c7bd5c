"""`graphpack serve`'s direct HTTP path (the entry module's ``http_app``) against the path it
replaces (the Nuclio-shaped event through ``handler``, the response mapped as Nuclio's wrapper
does): for every request the same status, content type, headers and body bytes."""
from __future__ import annotations

import concurrent.futures
import json
import re
import sys
import uuid
from pathlib import Path

import pytest

import graphpack
from graphpack.handlers import entry
from graphpack.packager.context import _env
from graphpack.runtime import tracing
from graphpack.runtime.http_wire import Request
from graphpack.runtime.processor import FunctionHost

from .conftest import STEPS

JSON = "application/json"
ID = re.compile(rb"[0-9a-f]{32}")


def host_for(directory: Path, spec: dict, code: str = STEPS) -> tuple[FunctionHost, object]:
    """A processor worker for ``spec``, with a generated entry module (uniquely named)."""
    module, user = f"gp_entry_{uuid.uuid4().hex[:8]}", f"gp_user_{uuid.uuid4().hex[:8]}"
    (directory / "spec.json").write_text(json.dumps(spec))
    (directory / f"{user}.py").write_text(code)
    values = {"function": "answer", "name": "proj-answer", "project": "proj", "modules": [user],
              "spec_file": "spec.json", "part": "the root part of the graph"}
    (directory / f"{module}.py").write_text(_env().get_template("entry.py.j2").render(values))
    config = {"metadata": {"name": "proj-answer"}, "spec": {"handler": f"{module}:handler"}}
    host = FunctionHost(directory, config, 0)
    return host, host.context_for("http", "http")


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    for name in ("GRAPHPACK_SPEC_FILE", "GRAPHPACK_SPEC", "GRAPHPACK_QUEUE_CONSUMER"):
        monkeypatch.delenv(name, raising=False)
    before = set(sys.modules)
    made = []

    def make(spec: dict, code: str = STEPS):
        directory = tmp_path / f"fn{len(made)}"
        directory.mkdir()
        made.append(host_for(directory, spec, code))
        return made[-1]

    yield make
    entry.reset()
    for name in set(sys.modules) - before:
        if name.startswith(("gp_entry_", "gp_user_")):
            del sys.modules[name]


def flow_spec(engine: str, respond_step: bool = True, queue: str | None = None) -> dict:
    fn = graphpack.new_function("answer", project="proj")
    step = fn.set_topology("flow", engine=engine).to(class_name="Answer", name="answer")
    if respond_step:
        step.respond()
    if queue:
        step.to(">>", "q1", path=queue)
    fn.spec.parameters = {"threshold": 0.5}
    return fn.serving_spec()


def settled(reply):
    return reply.result(timeout=10) if isinstance(reply, concurrent.futures.Future) else reply


def both(host: FunctionHost, context, request: Request) -> tuple[tuple, tuple]:
    """(direct answer, the answer through handler), event ids blanked out."""
    fast = settled(host.http_answerer(context, "http")(request))
    slow = settled(host.invoke(context, host.http_event(request, "http")))
    return tuple(_blank_ids(fast)), tuple(_blank_ids(slow))


def _blank_ids(reply: tuple) -> list:
    """The reply with the ids this process made (event ids, new traces) blanked out."""
    status, content_type, headers, body = reply
    new_trace = f"00-{tracing._TRACE_PREFIX}"
    headers = {k: "<new trace>" if str(v).startswith(new_trace) else v for k, v in headers.items()}
    return [status, content_type, headers, ID.sub(b"<id>", body)]


def request(body: bytes = b"", content_type: str = "", method: str = "POST", path: str = "/",
            query: dict | None = None, headers: dict | None = None) -> Request:
    headers = dict(headers or {})
    if content_type:
        headers["Content-Type"] = content_type
    return Request(method, path, query or {}, headers, body, path, content_type)


REQUESTS = [
    request(b'{"a": [1, 2]}', JSON),
    request(b'{"a": 1}', "application/json; charset=utf-8"),
    request(b'{"a": 1}', "Application/JSON"),
    request(b'"[1, 2]"', JSON),  # a JSON string: decoded by the SDK's rule, then by the graph's
    request(b"{not json", JSON),
    request(b"", JSON),
    request(b"plain words", "text/plain"),
    request("café".encode("latin-1"), "text/plain; charset=latin-1"),
    request(b"\xff\xfe", "text/plain"),
    request(b"plain words", "application/octet-stream"),
    request(b'{"x": 1}'),
    request(method="GET"),
    request(method="GET", path="/a/b", query={"x": "1", "z": ""}),
    request(b'{"k": 1}', JSON, headers={"graphpack-event-id": "ev-1", "MLRun-Event-Path": "/over"}),
    request(b'{"k": 1}', JSON, headers={"mlrun-event-id": "ev-2", "graphpack-event-id": "ev-3"}),
    request(b'{"k": 1}', JSON, headers={"X-Any": "v", "Cookie": "c=1"}),
    request(b'{"k": 1}', JSON, headers={"Ce-Type": "com.example.other", "ce-id": "1"}),
    request(b'{"k": 1}', JSON, headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
    request(b'{"k": 1}', JSON, headers={"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                        "traceparent": "not valid"}),
    request(b'{"op": "fail"}', JSON, headers={"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"}),
    *[request(json.dumps({"op": op}).encode(), JSON)
      for op in ("list", "none", "bytes", "text", "fail", "bad", "notready", "teapot", "response", "param")],
]


@pytest.mark.parametrize("engine", ["sync", "async"])
def test_the_direct_path_answers_as_handler(hosts, engine):
    host, context = hosts(flow_spec(engine))
    assert host._http_app is not None  # the generated entry module offers it
    for req in REQUESTS:
        fast, slow = both(host, context, req)
        assert fast == slow, req.body


def test_async_flow_without_responder_answers_the_event_id_alike(hosts):
    host, context = hosts(flow_spec("async", respond_step=False))
    fast, slow = both(host, context, request(b'{"a": 1}', JSON))
    assert fast == slow and json.loads(fast[3]) == {"id": "<id>"}
    given = request(b'{"a": 1}', JSON, headers={"graphpack-event-id": "ev-7"})
    assert settled(host.http_answerer(context, "http")(given))[3] == b'{"id": "ev-7"}'


def test_answers_sent_once_queue_writes_are_durable_alike(hosts, tmp_path):
    host, context = hosts(flow_spec("sync", queue=str(tmp_path / "q")))
    reply = host.http_answerer(context, "http")(request(b'{"a": 1}', JSON))
    assert isinstance(reply, concurrent.futures.Future)
    fast, slow = both(host, context, request(b'{"a": 1}', JSON))
    assert fast == slow and fast[0] == 200


def test_a_knative_kafka_cloudevent_takes_the_nuclio_path(hosts):
    host, context = hosts(flow_spec("sync"))
    for name in ("ce-type", "Ce-Type", "CE-TYPE"):
        req = request(b'{"k": 1}', JSON, headers={name: "dev.knative.kafka.event", "ce-id": "1"})
        assert entry.http_app(context)(req) is None
        fast, slow = both(host, context, req)
        assert fast == slow and json.loads(fast[3]) == {"echo": {"k": 1}}


def test_an_answer_that_cannot_be_encoded_is_500_alike(hosts):
    code = STEPS + '''

class Lone(Answer):
    def do(self, body):
        return self.context.Response(body="\\ud800", content_type="text/plain")
'''
    fn = graphpack.new_function("answer", project="proj")
    fn.set_topology("flow", engine="sync").to(class_name="Lone", name="lone").respond()
    host, context = hosts(fn.serving_spec(), code)
    fast, slow = both(host, context, request(b"{}", JSON))
    assert fast == slow and fast[0] == 500 and b"UnicodeEncodeError" in fast[3]


def test_an_entry_module_without_http_app_is_served_through_handler(tmp_path):
    (tmp_path / "plain_entry_mod.py").write_text(
        "def handler(context, event):\n    return {'path': event.path, 'body': event.body}\n")
    config = {"metadata": {"name": "plain"}, "spec": {"handler": "plain_entry_mod:handler"}}
    try:
        host = FunctionHost(tmp_path, config, 0)
        context = host.context_for("http", "http")
        reply = host.http_answerer(context, "http")(request(b'{"a": 1}', JSON, path="/p"))
    finally:
        sys.modules.pop("plain_entry_mod", None)
    assert host._http_app is None
    assert reply == (200, JSON, {}, b'{"path": "/p", "body": {"a": 1}}')
