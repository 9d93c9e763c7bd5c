"""Differences found between the mock server and the real Nuclio processor, pinned down at the
unit level (the end-to-end proofs are in test_http.py, test_cron.py and test_child.py)."""
from __future__ import annotations

import nuclio_sdk
import pytest

import graphpack
from graphpack.handlers.events import decode_text, from_nuclio


@pytest.mark.parametrize("content_type, body, expected", [
    ("text/plain", b"hello w\xc3\xb6rld", "hello wörld"),
    ("text/plain; charset=utf-8", b"caf\xc3\xa9", "café"),
    ("text/csv; charset=latin-1", b"caf\xe9", "café"),
    ('text/plain; charset="utf-8"', b"x", "x"),
    ("TEXT/HTML", b"<p>", "<p>"),
    ("text/plain", b"\xff\xfe", b"\xff\xfe"),                    # not UTF-8: stays bytes
    ("text/plain; charset=no-such-codec", b"abc", b"abc"),       # unknown charset: stays bytes
    ("application/octet-stream", b"abc", b"abc"),
    ("", b"abc", b"abc"),
    ("image/png", b"\x89PNG", b"\x89PNG"),
])
def test_decode_text(content_type: str, body: bytes, expected: object) -> None:
    assert decode_text(body, content_type) == expected


def test_nuclio_text_event_reaches_the_graph_as_str() -> None:
    """nuclio-sdk hands a text/plain request over as bytes; the mock server's graph sees str."""
    event = nuclio_sdk.Event(body=b"plain words", content_type="text/plain", path="/x", method="POST",
                             trigger=nuclio_sdk.TriggerInfo("http", "http"))
    graph_event = from_nuclio(event)
    assert graph_event.body == "plain words" and graph_event.content_type == "text/plain"
    raw = nuclio_sdk.Event(body=b"\x00\x01", content_type="application/octet-stream",
                           trigger=nuclio_sdk.TriggerInfo("http", "http"))
    assert from_nuclio(raw).body == b"\x00\x01"


def test_cron_text_body_reaches_the_graph_as_str() -> None:
    """Nuclio's cron event carries the declared body as bytes with no content type; the graph
    gets the text the trigger declared (a JSON body keeps its Content-Type header and is decoded)."""
    event = nuclio_sdk.Event(body=b"plain note", trigger=nuclio_sdk.TriggerInfo("cron", "note"))
    graph_event = from_nuclio(event)
    assert (graph_event.body, graph_event.trigger) == ("plain note", "cron")
    stream = nuclio_sdk.Event(body=b"\x00raw", trigger=nuclio_sdk.TriggerInfo("http", "http"))
    assert from_nuclio(stream).body == b"\x00raw"  # only cron bodies are text by construction


class Where:
    def do_event(self, event):
        event.body = {"path": event.path, "fields": event.fields}
        return event


def test_mock_server_splits_the_query_string_like_the_http_trigger() -> None:
    """Nuclio's http trigger hands the graph the path without the query, and the query as
    ``event.fields``; the mock server's ``test(path)`` now does the same."""
    fn = graphpack.new_function("where")
    fn.set_topology("flow", engine="sync").to(class_name="Where", name="where").respond()
    server = fn.to_mock_server()
    assert server.test("/a/b?x=1&y=two&y=three&z=", {}) == {"path": "/a/b",
                                                          "fields": {"x": "1", "y": "three", "z": ""}}
    assert server.test("/plain", {}) == {"path": "/plain", "fields": None}
    assert server.test("?k=v", {}) == {"path": "/", "fields": {"k": "v"}}


def test_mock_server_decodes_and_normalises_paths_like_the_http_trigger() -> None:
    """Nuclio's http trigger percent-decodes and normalises the path before the function sees it."""
    fn = graphpack.new_function("where")
    fn.set_topology("flow", engine="sync").to(class_name="Where", name="where").respond()
    server = fn.to_mock_server()
    for path in ("/v2/models/ir%69s/infer", "//v2/models/iris/infer", "/v2/models/x/../iris/infer",
                 "/v2/models/iris%2Finfer"):
        assert server.test(path, {})["path"] == "/v2/models/iris/infer", path
    assert server.test("/v2/models/", {})["path"] == "/v2/models/"


def test_repeated_trigger_ids_become_unique_event_ids() -> None:
    """Nuclio's http trigger reuses one event object per worker, so every event carries the same
    id; the graph gets a fresh id whenever the trigger's id repeats, and a caller's id as given."""
    def nuclio_event(headers=None):
        return nuclio_sdk.Event(body=b"{}", _id="same-uuid", path="/", method="POST", headers=headers or {},
                                trigger=nuclio_sdk.TriggerInfo("http", "http"))

    ids = [from_nuclio(nuclio_event()).id for _ in range(5)]
    assert len(set(ids)) == 5
    assert from_nuclio(nuclio_event({"graphpack-event-id": "mine"})).id == "mine"
    assert from_nuclio(nuclio_event({"mlrun-event-id": "theirs"})).id == "theirs"
    assert from_nuclio(nuclio_sdk.Event(body=b"{}", _id="other", trigger=nuclio_sdk.TriggerInfo("http", "h"))).id == "other"
