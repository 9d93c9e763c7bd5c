"""Small helpers shared by the serving classes: dot paths into bodies, body decoding."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import BadRequestError


def decode_body(body: Any, content_type: str | None = None) -> Any:
    """A JSON body given as str/bytes, decoded; other bodies unchanged.

    A body that is not valid JSON is a 400 when the content type says JSON (or is unset),
    and kept as is for other content types.
    """
    if not isinstance(body, (str, bytes, bytearray)):
        return body
    ctype = (content_type or "").lower()
    if ctype and "json" not in ctype:
        return body
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"failed to json decode the request body: {exc}") from None


def is_get(event: Any) -> bool:
    """True for a GET event (the method compared case-insensitively)."""
    method = getattr(event, "method", None)
    return method == "GET" or (method is not None and method != "POST" and method.upper() == "GET")


_stamp: tuple[int, str, str] = (-1, "", "")  # (millisecond, its timestamp, the second's prefix)


def utc_timestamp() -> str:
    """The current UTC time, ISO 8601 with milliseconds (cached per millisecond: under load
    many responses share one string)."""
    global _stamp
    ms = time.time_ns() // 1_000_000
    cached = _stamp  # one tuple, swapped atomically, so threads never mix two instants
    if cached[0] == ms:
        return cached[1]
    second, millis = divmod(ms, 1000)
    prefix = cached[2] if cached[0] // 1000 == second else datetime.fromtimestamp(
        second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
    stamp = f"{prefix}{millis:03d}+00:00"
    _stamp = (ms, stamp, prefix)
    return stamp
