"""Nuclio events -> graph events.

The Nuclio SDK hands the handler an event whose strings may be ``bytes`` (when the processor
does not decode event strings) and whose body is ``bytes``, ``str`` or, for JSON requests the
SDK could parse, a ``dict``/``list``. HTTP and cron events keep their path and method; events
read from a stream are queue records: the path resets to ``/`` and a wrapped record
(``{"full_event_wrapper": true, ...}``) is unwrapped into the event that was pushed. A
``text/*`` body, and a cron trigger's body without a content type, is decoded to ``str`` (the
mock server's view of a text request, and the text the trigger declared).

Nuclio's http trigger hands every event of a worker the same id (it reuses one event object
and assigns an id only when it is empty); an id that repeats the previous event's is replaced by
a fresh one, so that responses, logs and queue records never share ids. A caller's own id
(the graphpack-/mlrun-event-id headers) is kept as given.

``from_http`` builds the same graph event straight from a request of graphpack's own http trigger,
without the Nuclio-shaped event in between (the processor's fast path; tests/handlers compare them).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..queues import record as wire
from ..runtime import json_codec, tracing
from ..runtime.event import Event, new_event_id

#: Nuclio trigger kinds whose events are stream / queue records.
STREAM_KINDS = frozenset({
    "v3ioStream", "v3io-stream", "kafka", "kafka-cluster", "kinesis", "rabbit-mq", "rabbitMq",
    "nats", "mqtt", "iotCoreMqtt", "eventhub", "pubsub", "v3ioItemPoller", "stream",
})
EVENT_ID_HEADERS = ("graphpack-event-id", "mlrun-event-id")
EVENT_PATH_HEADERS = ("graphpack-event-path", "mlrun-event-path")


def text(value: Any, default: str = "") -> str:
    """A str from a Nuclio field that may be bytes or None."""
    if value is None:
        return default
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def trigger_kind(event: Any, context: Any = None) -> str:
    """The kind of the trigger that produced ``event`` ("http", "cron", "v3ioStream", ...)."""
    trigger = getattr(event, "trigger", None)
    kind = text(getattr(trigger, "kind", None))
    if not kind and context is not None:
        kind = text(getattr(getattr(context, "trigger", None), "kind", None))
    return kind or "http"


def is_stream(kind: str) -> bool:
    return kind in STREAM_KINDS


def _headers(raw: Any) -> dict:
    if not raw:
        return {}
    out = {}
    for key, value in dict(raw).items():
        if key.__class__ is not str:
            key = text(key)
        if value.__class__ in (bytes, bytearray):
            value = text(value)
        out[key] = value
    return out


def _event_time(value: Any) -> datetime | None:
    """The event's arrival time (None for Nuclio's zero cron timestamp)."""
    if isinstance(value, datetime):
        if value.year <= 1970:  # Nuclio's zero timestamp
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None


def _scan(headers: dict) -> tuple[Any, Any, Any, Any]:
    """In one pass over ``headers``: the event id and path a caller set with graphpack-/mlrun-event-id
    and -path headers, its W3C ``traceparent`` header when valid, and the first ``ce-type``."""
    event_id = path = traceparent = ce_type = None
    for key, value in headers.items():
        first = key[:1]
        if first in "gGmMtT":
            if value:
                lower = key.lower()
                if lower in EVENT_ID_HEADERS and (event_id is None or lower == EVENT_ID_HEADERS[0]):
                    event_id = value
                elif lower in EVENT_PATH_HEADERS and (path is None or lower == EVENT_PATH_HEADERS[0]):
                    path = value
                elif lower == tracing.HEADER:
                    traceparent = tracing.valid(value)
        elif first in "cC" and key[:3] in ("ce-", "Ce-", "CE-") and ce_type is None and key.lower() == "ce-type":
            ce_type = value
    return event_id, path, traceparent, ce_type


KAFKA_CLOUDEVENT = "dev.knative.kafka.event"


class _TriggerIds:
    """Trigger-assigned event ids made unique: a repeat of the previous id gets a fresh one."""

    def __init__(self) -> None:
        self.last: str | None = None

    def unique(self, trigger_id: str) -> str:
        if trigger_id and trigger_id == self.last:
            return new_event_id()
        if trigger_id:
            self.last = trigger_id
        return trigger_id


_trigger_ids = _TriggerIds()


def _str(value: Any, default: str = "") -> str:
    return value if value.__class__ is str and value else text(value, default)


def from_nuclio(event: Any, context: Any = None, kind: str | None = None) -> Event:
    """The graph event for one Nuclio event (see the module docstring for the rules)."""
    kind = kind or trigger_kind(event, context)
    body = getattr(event, "body", None)
    headers = _headers(getattr(event, "headers", None))
    if not is_stream(kind):  # a queue record's headers are kept as they are, never read here
        event_id, path, traceparent, ce_type = _scan(headers)
        if kind == "http" and ce_type == KAFKA_CLOUDEVENT:  # a binary-mode CloudEvent from a Knative KafkaSource
            kind = "kafka"
    if is_stream(kind):
        graph_event = from_record(body)
        graph_event.stream_path = text(getattr(event, "topic", None)) or None
        graph_event.offset = getattr(event, "offset", 0) or 0
        graph_event.shard_id = getattr(event, "shard_id", None)
        graph_event.headers.update(headers)
    else:
        if isinstance(body, (bytes, bytearray)) and not body:
            body = None  # an empty request body (Nuclio may hand over b"")
        content_type = _str(getattr(event, "content_type", None))
        if isinstance(body, (bytes, bytearray)):  # a cron body is text declared in function.yaml
            body = decode_text(body, content_type or ("text/plain" if kind == "cron" else ""))
        method = _str(getattr(event, "method", None)) or ("POST" if kind != "cron" or body is not None else "GET")
        event_id = event_id or _trigger_ids.unique(_str(getattr(event, "id", None))) or None
        path = path or _str(getattr(event, "path", None)) or "/"
        graph_event = Event(body, event_id, path, method, headers)
        if traceparent is not None:
            graph_event.traceparent = traceparent
        if content_type:
            graph_event.content_type = content_type
        fields = getattr(event, "fields", None)
        if fields:
            graph_event.fields = {text(k): v for k, v in dict(fields).items()}
        when = _event_time(getattr(event, "timestamp", None))
        if when is not None:
            graph_event.time = when
    graph_event.trigger = kind
    return graph_event


def from_http(request: Any) -> Event | None:
    """What ``from_nuclio`` makes of the Nuclio-shaped event graphpack's processor builds for
    ``request`` (a parsed request of its http trigger), without building that event; None for a
    Knative KafkaSource CloudEvent (a queue record: ``from_nuclio`` handles it)."""
    headers = request.headers
    event_id, path, traceparent, ce_type = _scan(headers)
    if ce_type == KAFKA_CLOUDEVENT:
        return None
    body: Any = request.body
    content_type = request.content_type
    if not body:
        body = None
    elif content_type == "application/json" or content_type.split(";")[0].strip() == "application/json":
        try:  # as nuclio-sdk: a JSON body is decoded, and kept as bytes when that fails
            body = json_codec.loads(body)
        except ValueError:
            pass
    else:
        body = decode_text(body, content_type)
    event = Event(body, event_id, path or request.path or "/", request.method, headers)
    if traceparent is not None:
        event.traceparent = traceparent
    if content_type:
        event.content_type = content_type
    if request.query:
        event.fields = dict(request.query)
    event.time = datetime.now(timezone.utc)
    event.trigger = "http"
    return event


def decode_text(body: bytes | bytearray, content_type: str) -> Any:
    """A ``text/*`` body as ``str`` (its charset, UTF-8 by default), as the mock server hands text
    to the graph; Nuclio delivers every non-JSON body as bytes. Other bodies are returned as given."""
    main, _, params = content_type.partition(";")
    if not main.strip().lower().startswith("text/"):
        return body
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return bytes(body).decode(charset)
    except (LookupError, UnicodeDecodeError):
        return body  # not text after all: the graph gets the bytes


def from_record(data: Any) -> Event:
    """The event a queue record carries: a wrapped record is unwrapped, anything else is the body."""
    record = data
    if isinstance(data, (bytes, bytearray, str)):
        try:
            record = wire.decode(bytes(data) if isinstance(data, bytearray) else data)
        except wire.RecordError:
            record = data  # not JSON: the raw payload is the body
    return wire.unwrap(record, Event)
