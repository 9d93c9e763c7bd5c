"""W3C trace context: every event carries a ``traceparent`` across functions and queues.

An HTTP event takes the caller's ``traceparent`` header when it is valid (W3C Trace Context,
level 1: ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``, lowercase, ids not all
zeros); otherwise the event gets a new one the first time something needs it (a queue record,
an error, a log line, the response header). Queue records carry it (``"traceparent"`` in the
wire record), so a child function's event continues the root's trace; error-stream records
and the log lines graphpack and the steps write while an event runs (``trace_id``) name it.

New ids are a per-process random prefix plus a counter (unique, and cheap to make).
"""
from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import Any

HEADER = "traceparent"
_VALID = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_TRACE_PREFIX = os.urandom(10).hex()
_SPAN_PREFIX = os.urandom(4).hex()
_COUNTER = itertools.count(1)

#: the event the current thread or task is running (its trace id goes into log lines)
current_event: ContextVar[Any] = ContextVar("graphpack_event", default=None)


def valid(value: object) -> str | None:
    """``value`` when it is a traceparent graphpack accepts, else None."""
    if value.__class__ is not str:
        return None
    match = _VALID.match(value)  # type: ignore[arg-type]
    if match is None:
        return None
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return value if rest is None else value[:55]  # a later version: its first four fields


def new_traceparent() -> str:
    """A new trace (sampled), unique in this process and across processes."""
    n = next(_COUNTER)
    return f"00-{_TRACE_PREFIX}{n & 0xFFFFFFFFFFFF:012x}-{_SPAN_PREFIX}{n & 0xFFFFFFFF:08x}-01"


def trace_id(traceparent: str) -> str:
    """The 32-hex-digit trace id of a traceparent."""
    return traceparent[3:35]


def current_trace_id() -> str | None:
    """The trace id of the event being run here, if any (made now if the event had none yet)."""
    event = current_event.get()
    if event is None:
        return None
    traceparent = getattr(event, "traceparent", None)
    return trace_id(traceparent) if isinstance(traceparent, str) else None


__all__ = ["HEADER", "current_event", "current_trace_id", "new_traceparent", "trace_id", "valid"]
