"""RemoteStep and BatchHttpRequests against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from graphpack.errors import GraphpackError
from graphpack.runtime.context import GraphContext
from graphpack.runtime.event import Event
from graphpack.serving.remote import BatchHttpRequests, RemoteStep, RemoteStepError


def test_post_json_and_headers(http_server: Any) -> None:
    step = RemoteStep(url=f"{http_server.url}/ok", headers={"X-Token": "t1"}, retries=0)
    out = step.do_event(Event({"inputs": [1, 2]}, id="ev-1", path="/v2/models/m/infer"))
    assert out.body == {"method": "POST", "path": "/ok", "echo": {"inputs": [1, 2]}}
    sent = http_server.requests[-1]
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["x-token"] == "t1"
    assert headers["content-type"] == "application/json"
    assert headers["graphpack-event-id"] == "ev-1" and headers["mlrun-event-id"] == "ev-1"
    assert headers["graphpack-event-path"] == "/v2/models/m/infer"
    step.close()


def test_get_sends_no_body_and_subpaths(http_server: Any) -> None:
    step = RemoteStep(url=http_server.url, subpath="$path", method="GET", retries=0)
    out = step.do_event(Event({"ignored": True}, path="/ok/items/7"))
    assert out.body["path"] == "/ok/items/7" and out.body["method"] == "GET"
    assert http_server.requests[-1]["body"] == b""
    fixed = RemoteStep(url=http_server.url + "/", subpath="/ok/fixed", retries=0)
    assert fixed.do_event(Event({"a": 1})).body["path"] == "/ok/fixed"
    by_event_method = RemoteStep(url=f"{http_server.url}/ok", retries=0)
    assert by_event_method.do_event(Event(None, method="PUT")).body["method"] == "PUT"


def test_input_result_paths_and_expressions(http_server: Any) -> None:
    step = RemoteStep(url=f"{http_server.url}/ok", input_path="req", result_path="resp", retries=0)
    out = step.do_event(Event({"req": {"q": 1}, "keep": "me"}))
    assert out.body["keep"] == "me" and out.body["resp"]["echo"] == {"q": 1}
    expr = RemoteStep(url=http_server.url, url_expression="endpoint + '/ok/' + event['user']",
                      body_expression="{'who': event['user']}", retries=0)
    out = expr.do_event(Event({"user": "ann"}))
    assert out.body["path"] == "/ok/ann" and out.body["echo"] == {"who": "ann"}
    raw = RemoteStep(url=f"{http_server.url}/ok", return_json=False, retries=0)
    answer = raw.do_event(Event("plain text")).body
    assert isinstance(answer, bytes) and json.loads(answer)["echo"] == "plain text"
    assert http_server.requests[-1]["body"] == b"plain text"  # a str body is sent as is


def test_5xx_fails_with_url_and_status_after_retries(http_server: Any) -> None:
    step = RemoteStep(name="scorer", url=f"{http_server.url}/fail", retries=2, backoff_factor=0.01)
    with pytest.raises(RemoteStepError) as info:
        step.do_event(Event({"x": 1}))
    message = str(info.value)
    assert f"scorer: POST {http_server.url}/fail returned status 500" in message
    assert '"error": "boom"' in message and "(3 tries)" in message
    assert info.value.status_code == 500 and info.value.url == f"{http_server.url}/fail"
    assert len(http_server.requests) == 3


def test_retry_recovers_from_transient_5xx(http_server: Any) -> None:
    calls = {"n": 0}

    def flaky(method: str, path: str, data: bytes) -> tuple:
        calls["n"] += 1
        return (503, {"busy": True}, 0) if calls["n"] < 3 else (200, {"ok": calls["n"]}, 0)

    http_server.script = flaky
    step = RemoteStep(url=f"{http_server.url}/x", retries=3, backoff_factor=0.01)
    assert step.do_event(Event({})).body == {"ok": 3}


def test_4xx_fails_at_once(http_server: Any) -> None:
    step = RemoteStep(url=f"{http_server.url}/bad", retries=5, backoff_factor=0.01)
    with pytest.raises(RemoteStepError, match=r"POST .*/bad returned status 404: .*no such thing") as info:
        step.do_event(Event({}))
    assert info.value.status_code == 404 and len(http_server.requests) == 1


def test_timeout_names_the_url(http_server: Any) -> None:
    step = RemoteStep(name="slowpoke", url=f"{http_server.url}/slow", timeout=0.3, retries=1, backoff_factor=0.01)
    started = time.monotonic()
    expected = rf"slowpoke: POST {http_server.url}/slow timed out after 0.3s \(2 tries\)"
    with pytest.raises(RemoteStepError, match=expected) as info:
        step.do_event(Event({}))
    assert info.value.status_code is None
    assert time.monotonic() - started < 1.9


def test_connection_refused_and_non_json(http_server: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    step = RemoteStep(url=f"http://127.0.0.1:{port}/x", retries=0)
    with pytest.raises(RemoteStepError, match=rf"POST http://127.0.0.1:{port}/x failed to connect"):
        step.do_event(Event({}))
    http_server.script = lambda method, path, data: (200, b"<html>", 0)
    with pytest.raises(RemoteStepError, match="returned a body that is not JSON: <html>"):
        RemoteStep(url=http_server.url, retries=0).do_event(Event({}))


def test_function_name_resolved_through_context(http_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHPACK_ENDPOINT_SCORER", f"{http_server.url}/ok")
    step = RemoteStep(url="scorer", context=GraphContext(), retries=0)
    step.post_init("sync")
    assert step.url == f"{http_server.url}/ok"
    assert step.do_event(Event({"a": 1})).body["echo"] == {"a": 1}
    with pytest.raises(GraphpackError, match="needs a url"):
        RemoteStep()


def test_batch_requests_keep_order_and_run_concurrently(http_server: Any) -> None:
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def slow_echo(method: str, path: str, data: bytes) -> tuple:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.1)
        with lock:
            active["now"] -= 1
        return 200, {"path": path, "got": json.loads(data)}, 0

    http_server.script = slow_echo
    step = BatchHttpRequests(url_expression="'" + http_server.url + "/item/' + str(event['id'])",
                             body_expression="event['v']", max_in_flight=4, retries=0)
    items = [{"id": i, "v": i * 10} for i in range(6)]
    out = step.do_event(Event(items)).body
    assert [o["path"] for o in out] == [f"/item/{i}" for i in range(6)]
    assert [o["got"] for o in out] == [0, 10, 20, 30, 40, 50]
    assert active["max"] > 1
    step.close()


def test_batch_errors(http_server: Any) -> None:
    with pytest.raises(GraphpackError, match="either url or url_expression"):
        BatchHttpRequests(url="http://a", url_expression="event['u']")
    step = BatchHttpRequests(url=f"{http_server.url}/fail", retries=0, input_path="items", result_path="answers")
    with pytest.raises(RemoteStepError, match="returned status 500"):
        step.do_event(Event({"items": [1, 2]}))
    ok = BatchHttpRequests(url=f"{http_server.url}/ok", retries=0, input_path="items", result_path="answers")
    out = ok.do_event(Event({"items": [1], "keep": 1})).body
    assert out["keep"] == 1 and out["answers"][0]["echo"] == 1
    with pytest.raises(GraphpackError, match="expected a list body"):
        ok.do_event(Event({"items": "x"}))
