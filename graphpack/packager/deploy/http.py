"""Calling a deployed function over HTTP, with errors translated in one place."""
from __future__ import annotations

import json
from typing import Any

from ...errors import GraphpackError
from .base import InvokeResult


def call(url: str, method: str = "POST", body: Any = None, headers: dict | None = None,
         timeout: float = 60.0) -> InvokeResult:
    """One request; the body is sent as JSON unless it is bytes or a string."""
    import httpx

    headers = dict(headers or {})
    content: bytes | None = None
    if isinstance(body, (bytes, bytearray)):
        content = bytes(body)
    elif isinstance(body, str):
        content = body.encode()
    elif body is not None:
        content = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    try:
        response = httpx.request(method, url, content=content, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise GraphpackError(f"{method} {url}: no answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise GraphpackError(f"{method} {url}: {exc}") from None
    content_type = response.headers.get("content-type", "")
    data: Any = response.content
    if content_type.split(";")[0].strip() == "application/json":
        try:
            data = response.json()
        except ValueError:
            pass
    elif content_type.startswith("text/"):
        data = response.text
    return InvokeResult(response.status_code, data, content_type, dict(response.headers))
