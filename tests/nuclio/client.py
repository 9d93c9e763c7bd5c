"""Requests sent the same way to a running function (over HTTP) and to its mock server, and
the answers reduced to comparable values."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

#: response fields that differ between any two runs of the same request
VOLATILE = ("timestamp",)
JSON = "application/json"


@dataclass
class Case:
    """One request: ``body`` is the Python value handed to the mock server; over HTTP it is sent
    as JSON (dict/list), UTF-8 text (str) or raw bytes, with ``content_type``."""

    name: str
    path: str
    body: Any = None
    content_type: str | None = None
    method: str = ""
    headers: dict = field(default_factory=dict)

    @property
    def http_method(self) -> str:
        return self.method or ("POST" if self.body is not None else "GET")

    def data(self) -> bytes | None:
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()

    def type(self) -> str | None:
        if self.content_type is not None:
            return self.content_type
        if isinstance(self.body, (dict, list)):
            return JSON
        if isinstance(self.body, str):
            return "text/plain"
        if isinstance(self.body, bytes):
            return "application/octet-stream"
        return None


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any  # decoded JSON, str for text/*, else bytes
    headers: dict = field(default_factory=dict)  # the X-* headers, names lower-cased

    def normal(self) -> Answer:
        body = self.body
        if isinstance(body, dict):
            body = {k: ("<volatile>" if k in VOLATILE else v) for k, v in body.items()}
        return Answer(self.status, self.content_type, body, self.headers)


def x_headers(headers: Any) -> dict:
    """The custom (X-*) headers of an answer; the servers' own (X-Nuclio-*) are left out."""
    return {k.lower(): v for k, v in dict(headers or {}).items()
            if k.lower().startswith("x-") and not k.lower().startswith("x-nuclio")}


def _decode(content_type: str, data: bytes) -> Any:
    main = content_type.split(";")[0].strip().lower()
    if main == JSON:
        return json.loads(data)
    if main.startswith("text/"):
        return data.decode()
    return data


def over_http(base_url: str, case: Case, event_id: str | None = None, timeout: float = 30) -> Answer:
    headers = dict(case.headers)
    if case.type():
        headers["Content-Type"] = case.type()
    if event_id:
        headers["graphpack-event-id"] = event_id
    request = urllib.request.Request(base_url + case.path, data=case.data(), headers=headers,
                                     method=case.http_method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, data = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, data = exc.code, exc.headers, exc.read()
    content_type = headers.get("Content-Type", "")
    return Answer(status, content_type.split(";")[0].strip(), _decode(content_type, data), x_headers(headers))


def from_mock(server: Any, case: Case, event_id: str | None = None) -> Answer:
    headers = dict(case.headers)
    if event_id:
        headers["graphpack-event-id"] = event_id
    response = server.test(case.path, case.body, method=case.http_method, headers=headers,
                           content_type=case.type(), silent=True, get_body=False)
    body = response.body
    content_type = (response.content_type or "").split(";")[0].strip()
    if isinstance(body, (dict, list)):
        content_type = content_type or JSON
    elif isinstance(body, bytes) and content_type.startswith("text/"):
        body = body.decode()
    elif body is None:
        body = ""
    return Answer(response.status_code, content_type, body, x_headers(response.headers))
