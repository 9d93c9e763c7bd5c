"""Differences found between the mock server and the real Nuclio processor, pinned down at the
unit level (the end-to-end proofs are in test_http.py and test_cron.py)."""
from __future__ import annotations

import nuclio_sdk
import pytest

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
