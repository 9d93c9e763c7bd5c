"""The event that flows through a graph."""
from __future__ import annotations

import copy
import itertools
import os
from datetime import datetime, timezone
from typing import Any

from .tracing import new_traceparent

_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count(1)


def new_event_id() -> str:
    """A 32-hex-digit id, unique per process run (cheaper than uuid4)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


class Event:
    """A graph event: the body plus request attributes.

    Steps with ``full_event=True`` (or a ``do_event`` method) receive this object and may
    read or set any attribute, including their own.
    """

    # Class-level defaults keep construction cheap; instances shadow them when set.
    key: Any = None
    content_type: str | None = None
    error: Any = None
    origin_state: str = ""
    terminated: bool = False
    offset: int = 0
    shard_id: int | None = None
    stream_path: str | None = None
    trigger: Any = None
    fields: dict | None = None
    _time: datetime | None = None
    traceparent: str  # W3C trace context (runtime/tracing.py), made on first use like the id

    def __init__(
        self,
        body: Any = None,
        id: str | None = None,
        path: str = "/",
        method: str = "POST",
        headers: dict | None = None,
        **attrs: Any,
    ) -> None:
        self.body = body
        if id:
            self.id = id  # otherwise made on first use (see __getattr__): most events never need one
        self.path = path
        self.method = method
        self.headers = headers if headers is not None else {}
        for name, value in attrs.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        if name == "id":
            value = self.__dict__["id"] = new_event_id()
            return value
        if name == "traceparent":
            value = self.__dict__["traceparent"] = new_traceparent()
            return value
        raise AttributeError(f"'Event' object has no attribute {name!r}")

    @property
    def time(self) -> datetime:
        if self._time is None:
            self._time = datetime.now(timezone.utc)
        return self._time

    @time.setter
    def time(self, value: datetime | None) -> None:
        self._time = value

    # storey/MLRun spell it both ways
    timestamp = time
    processing_time = time

    def get_header(self, name: str, default: Any = None) -> Any:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return default

    def copy(self, deep_body: bool = True) -> "Event":
        """A copy for a parallel branch: attributes shallow, body deep (so branches cannot interfere)."""
        self.id  # noqa: B018 - fix the id before copying: branches share it
        self.traceparent  # noqa: B018 - and the trace
        new = object.__new__(Event)
        new.__dict__.update(self.__dict__)
        new.headers = dict(self.headers)
        if deep_body:
            new.body = copy.deepcopy(self.body)
        return new

    def __repr__(self) -> str:
        return f"Event(id={self.id!r}, path={self.path!r}, body={self.body!r})"
