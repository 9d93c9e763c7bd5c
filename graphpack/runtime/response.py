"""The HTTP-like response a graph returns (and a step may return on purpose)."""
from __future__ import annotations

from typing import Any


class Response:
    """``context.Response(headers=None, body=None, content_type=None, status_code=200)``."""

    def __init__(
        self,
        headers: dict | None = None,
        body: Any = None,
        content_type: str | None = None,
        status_code: int = 200,
    ) -> None:
        self.headers = headers or {}
        self.body = body
        self.content_type = content_type
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"Response(status_code={self.status_code}, body={self.body!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and (
            self.status_code, self.body, self.content_type, self.headers
        ) == (other.status_code, other.body, other.content_type, other.headers)
