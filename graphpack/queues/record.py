"""The wire record: how an event crosses a queue (DESIGN §4.7).

``{"full_event_wrapper": true, "body": ..., "id": ..., "key": ..., "time": ..., "traceparent": ...}``
encoded as compact JSON (UTF-8). The mock server round-trips through the same code, so a body
that cannot cross a queue fails in the first local test. ``traceparent`` (W3C trace context,
:mod:`graphpack.runtime.tracing`) continues the event's trace in the function that reads the
record; records written without it (before it existed, or by other producers) still read, and
their events start a new trace.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..runtime.tracing import valid

WRAPPER_KEY = "full_event_wrapper"


class RecordError(ValueError):
    """A body that cannot be serialised onto a queue, or bytes that are not a record."""


def wrap(event: Any, full_event: bool = True) -> dict:
    """The wire record of an event (or just its body when ``full_event`` is false)."""
    if not full_event:
        return event.body
    record = {WRAPPER_KEY: True, "body": event.body, "id": event.id}
    if event.key is not None:
        record["key"] = event.key
    if getattr(event, "_time", None) is not None:
        record["time"] = event._time.isoformat()
    traceparent = getattr(event, "traceparent", None)
    if traceparent is not None:
        record["traceparent"] = traceparent
    return record


# json.dumps with arguments builds an encoder per call; one shared (it keeps no state between calls)
# writes the same bytes ~1 us sooner, a sixth of a root's encoding time
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(record: Any, queue: str = "") -> bytes:
    """Serialise a record to bytes; raise RecordError naming the queue on failure."""
    if isinstance(record, (bytes, bytearray)):
        return bytes(record)
    try:
        return _ENCODER.encode(record).encode()
    except (TypeError, ValueError) as exc:
        where = f" to queue {queue!r}" if queue else ""
        raise RecordError(f"event body cannot be sent{where}: {exc}") from None


def decode(data: bytes | str) -> Any:
    """Parse bytes read from a queue back into a record (a wrapped dict or a bare body)."""
    try:
        return json.loads(data)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"queue record is not JSON: {exc}") from None


def unwrap(record: Any, event_class: Any) -> Any:
    """Build an event from a record; a bare (unwrapped) body becomes the event body."""
    if isinstance(record, dict) and record.get(WRAPPER_KEY):
        event = event_class(body=record.get("body"), id=record.get("id"), path="/")
        if record.get("key") is not None:
            event.key = record["key"]
        if record.get("time"):
            event.time = datetime.fromisoformat(record["time"])
        traceparent = valid(record.get("traceparent"))
        if traceparent is not None:
            event.traceparent = traceparent
        return event
    return event_class(body=record, path="/")
