"""The serving helpers: dot paths, body decoding, GET detection, the cached timestamp."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from graphpack.errors import BadRequestError
from graphpack.runtime.event import Event
from graphpack.runtime.paths import get_in, update_in
from graphpack.serving._utils import decode_body, is_get, utc_timestamp


def test_get_in_and_update_in() -> None:
    body = {"a": {"b": [10, 20]}}
    assert get_in(body, "a.b.1") == 20
    assert get_in(body, "a.x") is None and get_in(body, "a.b.5") is None
    assert get_in(body, None) is body
    with pytest.raises(TypeError, match="dict-like"):
        get_in("text", "a")
    assert update_in({"k": 1}, "r.s", 2) == {"k": 1, "r": {"s": 2}}
    assert update_in({}, "r", 5) == 5  # a falsy body is replaced
    with pytest.raises(TypeError, match="dict-like"):
        update_in(7, "r", 1)


def test_decode_body_and_is_get() -> None:
    assert decode_body('{"a": 1}') == {"a": 1}
    assert decode_body(b"") is None
    assert decode_body("plain", "text/plain") == "plain"
    with pytest.raises(BadRequestError, match="failed to json decode"):
        decode_body("{x", "application/json")
    assert is_get(Event(None, method="GET")) and is_get(Event(None, method="get"))
    assert not is_get(Event(None, method="POST")) and not is_get(Event(None, method=None))


def test_utc_timestamp_is_current_iso8601_and_moves() -> None:
    first = utc_timestamp()
    parsed = datetime.fromisoformat(first)
    assert parsed.tzinfo is not None
    assert abs((parsed - datetime.now(timezone.utc)).total_seconds()) < 0.05
    time.sleep(0.01)
    later = utc_timestamp()
    assert later > first
    time.sleep(1.0)  # crosses a second boundary: the cached prefix is rebuilt
    assert abs((datetime.fromisoformat(utc_timestamp()) - datetime.now(timezone.utc)).total_seconds()) < 0.05
