"""Dot paths into event bodies: ``input_path`` reads, ``result_path`` writes (MLRun's rules)."""
from __future__ import annotations

from typing import Any


def get_in(body: Any, path: str | None) -> Any:
    """``body["a"]["b"]`` for ``path="a.b"``; None when a key is missing; the body for no path."""
    if not path:
        return body
    if not hasattr(body, "__getitem__") or isinstance(body, (str, bytes)):
        raise TypeError("input_path parameter supports only dict-like event bodies")
    value = body
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                return None
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(value) <= index < len(value):
                return None
            value = value[index]
        else:
            return None
    return value


def update_in(body: Any, path: str | None, value: Any) -> Any:
    """Write ``value`` at ``path`` inside ``body`` (creating dicts); returns the new body.

    With no path, or a falsy body, the value replaces the body (as MLRun's result_path does).
    """
    if not path or not body:
        return value
    if not isinstance(body, dict):
        raise TypeError("result_path parameter supports only dict-like event bodies")
    target = body
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            target[part] = nxt
        target = nxt
    target[parts[-1]] = value
    return body
