"""Built-in data steps (storey's names): Map, Extend, Filter, FlatMap, MapClass.

Each takes ``fn`` (a callable or an expression string such as ``"(event['x'] + 1)"``);
graph code usually passes it as ``_fn=...`` so that it is saved as text in the spec.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import GraphpackError
from ..runtime.event import Event
from .utils import StepToDict


def _callable(fn: Any, step: str) -> Callable:
    if callable(fn):
        return fn
    if isinstance(fn, str):
        from ..runtime.resolve import resolve_handler

        return resolve_handler(fn, [], step)
    raise GraphpackError(f"step {step!r}: fn must be a callable or an expression string")


class _FnStep(StepToDict):
    def __init__(self, fn: Any = None, name: str | None = None, context: Any = None, **kw: Any) -> None:
        self.name = name or type(self).__name__
        if fn is None:
            raise GraphpackError(f"step {self.name!r}: {type(self).__name__} needs fn= (or _fn= as an expression)")
        self.fn = _callable(fn, self.name)
        self.context = context


class Map(_FnStep):
    """body = fn(body)."""

    def do(self, body: Any) -> Any:
        return self.fn(body)


class Extend(_FnStep):
    """body.update(fn(body)): add the fields fn returns."""

    def do(self, body: Any) -> Any:
        extra = self.fn(body)
        if not isinstance(body, dict) or not isinstance(extra, dict):
            raise TypeError(f"Extend needs a dict body and fn returning a dict, got {type(body).__name__} "
                            f"and {type(extra).__name__}")
        body.update(extra)
        return body


class Filter(_FnStep):
    """Pass the event on only when fn(body) is true."""

    def do_event(self, event: Event) -> Event | None:
        return event if self.fn(event.body) else None


class FlatMap(_FnStep):
    """fn(body) returns a list; each item continues as its own event."""

    def do_event(self, event: Event) -> list[Event]:
        out = []
        for item in self.fn(event.body):
            new = event.copy(deep_body=False)
            new.body = item
            out.append(new)
        return out


class MapClass(StepToDict):
    """Base for a class step: implement ``do(body)`` (may be ``async def``)."""

    def __init__(self, context: Any = None, name: str | None = None, **kw: Any) -> None:
        self.context = context
        self.name = name or type(self).__name__
        self._init_args = kw

    def do(self, body: Any) -> Any:  # pragma: no cover - meant to be overridden
        raise NotImplementedError(f"{type(self).__name__}.do() is not implemented")
