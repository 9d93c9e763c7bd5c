"""Drive an entry module the way Nuclio's Python wrapper does, with nuclio-sdk's real objects.

The processor sends each event as a msgpack map (``rpc/encoder/encode.go``); the wrapper unpacks
it, builds ``nuclio_sdk.Event`` with the SDK's deserializer, calls the handler, and turns the
return value into the processor's response with ``Response.from_entrypoint_output``.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import time
import uuid
from typing import Any

import msgpack
import nuclio_sdk
from nuclio_sdk.json_encoder import Encoder


def make_context(kind: str = "http", name: str = "http", worker_id: int = 0) -> tuple[Any, io.StringIO]:
    """A real nuclio_sdk.Context whose logger writes JSON records to the returned buffer."""
    stream = io.StringIO()
    logger = nuclio_sdk.Logger(logging.DEBUG, f"test-{uuid.uuid4().hex[:6]}")
    logger.set_handler("default", stream, nuclio_sdk.logger.JSONFormatter())
    context = nuclio_sdk.Context(logger=logger, platform=nuclio_sdk.Platform("local"), worker_id=worker_id,
                                 trigger=nuclio_sdk.TriggerInfo(kind, name))
    return context, stream


def encode_event(body: bytes = b"", content_type: str = "", kind: str = "http", name: str = "http",
                 headers: dict | None = None, method: str = "POST", path: str = "/", fields: dict | None = None,
                 offset: int = 0, shard_id: int = 0, topic: str = "", timestamp: int | None = None) -> bytes:
    """The msgpack bytes the processor writes to the wrapper's event socket."""
    event = {
        "body": body, "content_type": content_type, "content-type": content_type,
        "trigger": {"kind": kind, "name": name}, "fields": fields or {}, "headers": headers or {},
        "id": str(uuid.uuid4()), "method": method, "path": path, "size": len(body),
        "timestamp": int(time.time()) if timestamp is None else timestamp, "url": "",
        "shard_id": shard_id, "num_shards": 1, "type": "", "type_version": "", "version": "",
        "offset": offset, "topic": topic,
    }
    return msgpack.packb(event, use_bin_type=True)


def decode_event(packed: bytes, decode_strings: bool = True) -> Any:
    """What the wrapper hands the handler (``--decode-event-strings`` on by default)."""
    parsed = msgpack.unpackb(packed, raw=not decode_strings)
    kind = nuclio_sdk.EventDeserializerKinds.msgpack if decode_strings else nuclio_sdk.EventDeserializerKinds.msgpack_raw
    return nuclio_sdk.Event.deserialize(parsed, kind=kind)


def respond(output: Any) -> dict:
    """The processor-bound response dict for a handler's return value."""
    assert output is not None and not isinstance(output, list), f"handler returned {output!r}"
    return nuclio_sdk.Response.from_entrypoint_output(Encoder().encode, output)


def body_of(response: dict) -> Any:
    """The HTTP body the caller would receive (JSON decoded when the content type says so)."""
    body = response["body"]
    if response.get("body_encoding") == "base64":
        return base64.b64decode(body)
    if response["content_type"] == "application/json":
        return json.loads(body)
    return body


def call(module: Any, context: Any, decode_strings: bool = True, **event: Any) -> dict:
    """One event through ``module.handler`` and back, as the wrapper would do it."""
    output = module.handler(context, decode_event(encode_event(**event), decode_strings))
    return respond(output)
