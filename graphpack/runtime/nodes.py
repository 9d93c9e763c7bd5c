"""Compile graph steps into nodes: one callable per step, built once, called per event.

A node's ``call(event)`` returns the event to pass on, ``None`` to drop it, or a list of
events to fan out (FlatMap). Async steps give a coroutine function and ``is_async``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..errors import GraphpackError, HTTPError, StepError
from ..graph.steps import BaseStep, RouterStep, TaskStep
from .event import Event
from .paths import get_in, update_in
from .resolve import resolve_class, resolve_handler

DEFAULT_ROUTER = "graphpack.serving.ModelRouter"
_INJECTABLE = ("context", "name", "input_path", "result_path", "full_event", "graph_step")


class Node:
    """A compiled step."""

    __slots__ = ("name", "fullname", "step", "call", "is_async", "children", "responder",
                 "on_error", "kind", "obj", "body_fn")

    def __init__(self, step: BaseStep, call: Callable, is_async: bool = False, obj: Any = None) -> None:
        self.step = step
        self.name = step.name
        self.fullname = step.fullname
        self.call = call
        self.is_async = is_async
        self.obj = obj
        self.kind = step.kind
        self.children: list[Node] = []
        self.responder = bool(getattr(step, "responder", False))
        self.on_error: Node | None = None
        self.body_fn: Callable | None = None  # set when the step is a plain body -> body call

    def __repr__(self) -> str:
        return f"<Node {self.fullname}>"


class Route:
    """What a router's class sees for each route: ``run(event) -> event``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        self.object = node.obj
        self.function = getattr(node.step, "function", None)

    def run(self, event: Event) -> Event:
        try:
            return self.node.call(event)
        except (HTTPError, StepError):
            raise
        except Exception as exc:
            raise StepError(self.node.fullname, exc) from exc


# -- compiling ----------------------------------------------------------------------------

def _accepts(func: Callable, name: str, by_name_only: bool = False) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return True
    return not by_name_only and any(p.kind == p.VAR_KEYWORD for p in params.values())


def _resolve_args(class_args: dict, namespaces: list, step: str) -> dict:
    """``_name`` keys are handlers/expressions resolved to callables (MLRun's convention)."""
    out = {}
    for key, value in class_args.items():
        if key.startswith("_") and isinstance(value, str):
            out[key[1:]] = resolve_handler(value, namespaces, step)
        else:
            out[key] = value
    return out


def instantiate(step: TaskStep, namespaces: list, context: Any, extra: dict | None = None) -> Any:
    """Create the object of a class step, injecting what its ``__init__`` accepts."""
    cls = step._class_object or resolve_class(step.class_name, namespaces, step.fullname)
    kwargs = _resolve_args(step.class_args, namespaces, step.fullname)
    kwargs.update(extra or {})
    injected = {"context": context, "name": step.name, "input_path": step.input_path,
                "result_path": step.result_path, "full_event": step.full_event, "graph_step": step}
    for key in _INJECTABLE:
        if key not in kwargs and _accepts(cls, key):
            kwargs[key] = injected[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise GraphpackError(f"step {step.fullname!r}: cannot create {cls.__name__}: {exc}") from None


def _body_call(fn: Callable, input_path: str | None, result_path: str | None, is_async: bool) -> Callable:
    if not input_path and not result_path:
        if is_async:
            async def call_async(event: Event) -> Event:
                event.body = await fn(event.body)
                return event
            return call_async

        def call(event: Event) -> Event:
            event.body = fn(event.body)
            return event
        return call

    def _in(event: Event) -> Any:
        return get_in(event.body, input_path) if input_path else event.body

    def _out(event: Event, result: Any) -> Event:
        event.body = update_in(event.body, result_path, result) if result_path else result
        return event

    if is_async:
        async def call_paths_async(event: Event) -> Event:
            return _out(event, await fn(_in(event)))
        return call_paths_async

    def call_paths(event: Event) -> Event:
        return _out(event, fn(_in(event)))
    return call_paths


def _event_call(fn: Callable, is_async: bool) -> Callable:
    def _result(event: Event, out: Any) -> Any:
        if out is None or out.__class__ is Event or isinstance(out, (Event, list)):
            return out
        event.body = out  # a full-event handler that returned a body
        return event

    if is_async:
        async def call_async(event: Event) -> Any:
            return _result(event, await fn(event))
        return call_async

    def call(event: Event) -> Any:
        out = fn(event)
        if out is event:
            return out
        return _result(event, out)
    return call


def compile_task(step: TaskStep, namespaces: list, context: Any, routes: dict | None = None) -> Node:
    """A node for a task, error or router step."""
    if step.class_name is None and step._class_object is None:
        if isinstance(step, RouterStep):
            step.class_name = DEFAULT_ROUTER
        elif step.handler is None and step._handler_object is None:
            raise GraphpackError(f"step {step.fullname!r}: needs class_name or handler")
    if step.class_name is None and step._class_object is None:
        fn = resolve_handler(step._handler_object or step.handler, namespaces, step.fullname)
        if _accepts(fn, "context", by_name_only=True) and not isinstance(fn, type):
            inner = fn
            fn = lambda body, _f=inner: _f(body, context=context)  # noqa: E731
            is_async = inspect.iscoroutinefunction(inner)
        else:
            is_async = inspect.iscoroutinefunction(fn)
        full = bool(step.full_event)
        call = _event_call(fn, is_async) if full else _body_call(fn, step.input_path, step.result_path, is_async)
        return _with_body_fn(Node(step, call, is_async, obj=fn), fn, full)
    extra = {"routes": routes} if routes is not None else None
    obj = instantiate(step, namespaces, context, extra)
    if step.handler:
        method = getattr(obj, step.handler, None)
        if method is None:
            raise GraphpackError(f"step {step.fullname!r}: handler {step.handler!r} does not exist in class "
                                 f"{type(obj).__name__}")
        full = bool(step.full_event)
    elif hasattr(obj, "do_event"):
        method, full = obj.do_event, True
    elif hasattr(obj, "do"):
        method, full = obj.do, bool(step.full_event)
    else:
        raise GraphpackError(f"step {step.fullname!r}: class {type(obj).__name__} has no do() or do_event() "
                             "method (or name one with handler=)")
    is_async = inspect.iscoroutinefunction(method)
    # do_event classes (model servers, routers) apply input/result paths themselves
    call = _event_call(method, is_async) if full else _body_call(method, step.input_path, step.result_path, is_async)
    return _with_body_fn(Node(step, call, is_async, obj=obj), method, full)


def _with_body_fn(node: Node, fn: Callable, full: bool) -> Node:
    step: Any = node.step
    if not full and not node.is_async and not step.input_path and not step.result_path:
        node.body_fn = fn
    return node


def compile_router(step: RouterStep, namespaces: list, context: Any) -> Node:
    routes = {}
    for key, route_step in step.routes.items():
        routes[key] = Route(compile_task(route_step, namespaces, context))
    node = compile_task(step, namespaces, context, routes=routes)
    return node


def post_init(nodes: list[Node], mode: str) -> None:
    """Call ``post_init(mode)`` on every object that defines it (routes included)."""
    for node in nodes:
        objects = [node.obj]
        routes = getattr(node.obj, "routes", None)
        if isinstance(routes, dict):
            objects += [r.object for r in routes.values() if isinstance(r, Route)]
        for obj in objects:
            hook = getattr(obj, "post_init", None)
            if callable(hook) and not inspect.isclass(obj):
                hook(mode)
