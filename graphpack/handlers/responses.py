"""Graph responses -> what the Nuclio Python wrapper expects back.

The wrapper treats a returned ``list`` as a batch (only the first item answers a normal
event) and ``None`` as the text "None", so the handler always returns a ``Response`` (the
context's own class, i.e. ``nuclio_sdk.Response`` under Nuclio) with a ``str`` or ``bytes``
body: dicts, lists and other JSON values are encoded here, with the right content type.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ..runtime.response import Response

JSON = "application/json"


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


_ENCODER = json.JSONEncoder(default=_default)  # one encoder: json.dumps(default=...) builds one per call
#: the C encoder that ``_ENCODER.encode`` builds on every call, built once. Without the circular
#: reference check (whose bookkeeping a shared encoder could not keep per call): a circular body
#: ends in RecursionError, and ``_ENCODER`` then raises its usual error for it.
_C_ENCODER = None if c_make_encoder is None else c_make_encoder(
    None, _default, encode_basestring_ascii, None, ": ", ", ", False, False, True)


def dumps(value: Any) -> str:
    """JSON text for a response body (numpy values, dates and sets allowed): ``_ENCODER.encode``'s."""
    if _C_ENCODER is not None:
        try:
            return "".join(_C_ENCODER(value, 0))
        except RecursionError:
            pass
    return _ENCODER.encode(value)


def encode_body(body: Any, content_type: str | None) -> tuple[Any, str]:
    """(str-or-bytes body, content type) for any body a graph may answer with."""
    if body is None:
        return "", content_type or "text/plain"
    if isinstance(body, str):
        return body, content_type or "text/plain"
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), content_type or "application/octet-stream"
    return dumps(body), content_type or JSON


def error_response(status: int, message: str) -> Response:
    """A JSON error response (``{"error": message}``) without a traceback."""
    return Response(body={"error": message}, content_type=JSON, status_code=status)


def to_nuclio(response: Response, context: Any = None) -> Any:
    """A response object the wrapper encodes as given (never a bare list or None)."""
    body, content_type = encode_body(response.body, response.content_type)
    headers = {str(k): v for k, v in response.headers.items()} if response.headers else {}
    factory = getattr(context, "Response", None) if context is not None else None
    if factory is None or factory is Response:
        return Response(headers=headers, body=body, content_type=content_type,
                        status_code=int(response.status_code))
    return factory(headers=headers, body=body, content_type=content_type,
                   status_code=int(response.status_code))


def http_reply(response: Response) -> tuple[int, str, dict, bytes]:
    """(status, content type, headers, body bytes): the answer graphpack's processor sends for
    ``to_nuclio(response)`` (its fast path, without the response object in between)."""
    body = response.body
    if body.__class__ is dict or body.__class__ is list:  # the common case, as encode_body does it
        data, content_type = dumps(body).encode(), response.content_type or JSON
    else:
        text, content_type = encode_body(body, response.content_type)
        data = text.encode() if text.__class__ is str else text
    headers = {str(k): v for k, v in response.headers.items()} if response.headers else {}
    return int(response.status_code), content_type, headers, data


def error_output(status: int, message: str, context: Any = None) -> Any:
    """A JSON error response (``{"error": message}``) without a traceback."""
    return to_nuclio(error_response(status, message), context)
