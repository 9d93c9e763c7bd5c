"""The error stream: failed events as records on a queue (``fn.spec.error_stream``).

A record is ``{"error": "<Type>: <message>", "step": <step name>, "body": <original body>,
"id": <event id>, "time": <ISO UTC>}`` plus any extra fields. A body that cannot be serialised is
sent as its ``repr`` so the error record itself always gets through.
"""
from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from . import record as wire
from .base import Queue

_queues: dict[str, Queue] = {}
_lock = threading.Lock()


def error_record(step: str, error: BaseException | str, body: Any, event_id: Any = None, **extra: Any) -> dict:
    """The record pushed to the error stream for an event that failed in ``step``."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    try:
        wire.encode(body)
    except wire.RecordError:
        body = repr(body)
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    rec = {"error": message, "step": step, "body": body, "id": event_id,
           "time": datetime.now(UTC).isoformat()}
    rec.update(extra)
    return rec


def push_error(
    target: str | Queue, step: str, error: BaseException | str, body: Any, event_id: Any = None,
    options: dict | None = None, **extra: Any,
) -> dict:
    """Push an error record to ``target`` (a queue URL, opened once and reused, or a Queue); returns it."""
    rec = error_record(step, error, body, event_id, **extra)
    if isinstance(target, Queue):
        queue = target
    else:
        with _lock:
            cached = _queues.get(target)
            if cached is None or cached.closed:
                from . import open_queue

                cached = _queues[target] = open_queue(target, **(options or {}))
            queue = cached
    queue.push([rec])
    queue.flush()
    return rec


def close_error_streams() -> None:
    """Close the queues ``push_error`` opened (call on shutdown)."""
    with _lock:
        queues = list(_queues.values())
        _queues.clear()
    for queue in queues:
        queue.close()
