"""Objects shaped like nuclio-sdk's (Context, Event, TriggerInfo, Platform, Response), for
graphpack's own processor, plus the mapping of a handler's return value to an HTTP response
that Nuclio's Python wrapper applies (``Response.from_entrypoint_output``).

No dependency on nuclio-sdk: images stay small, and the same entry module runs under the
real Nuclio processor with the real SDK objects.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Callable

from .event import new_event_id
from .logger import Logger


class TriggerInfo:
    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind = kind
        self.name = name


class Response:
    """nuclio_sdk.Response's shape."""

    def __init__(self, headers: dict | None = None, body: Any = None, content_type: str | None = None,
                 status_code: int = 200) -> None:
        self.headers = headers or {}
        self.body = body
        self.status_code = status_code
        self.content_type = content_type or "text/plain"


class Platform:
    """Termination/drain callbacks the processor calls on SIGTERM / rebalance."""

    def __init__(self, kind: str = "local", namespace: str = "default") -> None:
        self.kind = kind
        self.namespace = namespace
        self._termination_callback: Callable[[], Any] | None = None
        self._drain_callback: Callable[[], Any] | None = None

    def set_termination_callback(self, callback: Callable[[], Any]) -> None:
        self._termination_callback = callback

    def set_drain_callback(self, callback: Callable[[], Any]) -> None:
        self._drain_callback = callback

    def terminate(self) -> None:
        if self._termination_callback is not None:
            self._termination_callback()


class _UserData:
    pass


class Context:
    """nuclio_sdk.Context's shape: logger, platform, worker_id, trigger, user_data, Response."""

    Response = Response
    #: graphpack's processor accepts a handler's ``concurrent.futures.Future`` of its output and
    #: sends it when done; the entry module returns one while an event's queue writes complete
    #: (DESIGN §4.9), so that the worker takes the next event meanwhile. Nuclio has no such thing.
    deferred_replies = True

    def __init__(self, logger: Any = None, platform: Platform | None = None, worker_id: int = 0,
                 trigger: TriggerInfo | None = None) -> None:
        self.logger = logger or Logger("graphpack.function")
        self.platform = platform or Platform()
        self.worker_id = worker_id
        self.trigger = trigger or TriggerInfo("http", "http")
        self.trigger_name = self.trigger.name
        self.user_data = _UserData()


class Event:
    """nuclio_sdk.Event's shape (body is bytes unless a JSON body was decoded)."""

    # defaults live on the class: an event sets only what it has (cheap per request)
    content_type = ""
    fields: dict = {}
    method = "POST"
    path = "/"
    size = 0
    url = ""
    shard_id = 0
    num_shards = 0
    offset = 0
    topic = ""
    last_in_batch = False
    type = type_version = version = ""

    def __init__(self, body: Any = None, content_type: str = "", trigger: TriggerInfo | None = None,
                 fields: dict | None = None, headers: dict | None = None, id: str | None = None,
                 method: str = "POST", path: str = "/", size: int = 0, timestamp: datetime | None = None,
                 url: str = "", **extra: Any) -> None:
        self.body = body
        self.content_type = content_type
        self.trigger = trigger or TriggerInfo()
        if fields:
            self.fields = fields
        self.headers = headers if headers is not None else {}
        self.id = id or new_event_id()
        self.method = method
        self.path = path or "/"
        self.size = size
        self.timestamp = timestamp or datetime.now(timezone.utc)
        if url:
            self.url = url
        for name, value in extra.items():  # shard_id, num_shards, offset, topic, last_in_batch
            setattr(self, name, value)

    def get_header(self, name: str) -> Any:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None


def _json(obj: Any) -> str:
    def fix(value: Any) -> Any:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return str(value)
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [fix(v) for v in value]
        return value

    return json.dumps(fix(obj), default=str)


def _encode(body: Any) -> tuple[bytes, str | None]:
    """Body bytes and the content type the body implies (None: keep the given one)."""
    if body is None:
        return b"", None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), None
    if isinstance(body, str):
        return body.encode(), None
    if isinstance(body, (dict, list)):
        return _json(body).encode(), "application/json"
    return str(body).encode(), None


def to_http(output: Any) -> tuple[int, str, dict, bytes]:
    """(status, content type, headers, body) for a handler's return value, as Nuclio's wrapper
    maps it: str/bytes as text, dict as JSON, (status, body) tuples, Response objects."""
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], int):
        status, body = output
        data, implied = _encode(body)
        return status, implied or "text/plain", {}, data
    if hasattr(output, "status_code") and hasattr(output, "body"):
        data, implied = _encode(output.body)
        content_type = getattr(output, "content_type", None) or implied or "text/plain"
        if implied == "application/json" and content_type == "text/plain":
            content_type = implied
        return int(output.status_code), content_type, dict(getattr(output, "headers", None) or {}), data
    if isinstance(output, list):  # Nuclio treats a list as a batch and answers its first item
        return to_http(output[0]) if output else (200, "text/plain", {}, b"")
    if output is None:
        return 200, "text/plain", {}, b"None"
    data, implied = _encode(output)
    return 200, implied or "text/plain", {}, data
