"""Graph steps: the plain-data model of a serving graph and its builder methods.

The classes mirror MLRun's serving states (TaskStep, RouterStep, QueueStep, ErrorStep,
FlowStep, RootFlowStep) so that MLRun graph code runs unchanged. They hold data only;
the runtime compiles them into callables.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator

from ..errors import GraphpackError
from .objects import describe_object, plain_args, qualified_name

QUEUE_ALIASES = (">>", "$queue")
REMOTE_ALIASES = ("$remote",)
ROUTER_MARK = "*"
ENGINES = ("sync", "async")
MAX_ROUTES = 4500
MAX_ALLOWED_STEPS = MAX_ROUTES  # MLRun's name for the route limit



class BaseStep:
    """Common fields and the chaining methods every step has."""

    kind = "task"
    _fields: tuple[str, ...] = ("after", "function", "comment", "shape", "on_error")

    def __init__(self, name: str | None = None, after: list | str | None = None,
                 function: str | None = None, comment: str | None = None,
                 shape: str | None = None) -> None:
        self.name = name
        self.after = _as_list(after)
        self.function = function
        self.comment = comment
        self.shape = shape
        self.on_error: str | None = None
        self._parent: FlowStep | None = None

    @property
    def parent(self) -> "FlowStep | None":
        return self._parent

    @property
    def fullname(self) -> str:
        if self._parent is not None and not isinstance(self._parent, RootFlowStep) and self._parent.name:
            return f"{self._parent.fullname}.{self.name}"
        return self.name or ""

    # -- building -------------------------------------------------------------------------
    def to(self, class_name: Any = None, name: str | None = None, handler: Any = None,
           graph_shape: str | None = None, function: str | None = None,
           full_event: bool | None = None, input_path: str | None = None,
           result_path: str | None = None, **class_args: Any) -> "BaseStep":
        """Add a step after this one and return it."""
        flow = self._flow_for_to()
        return flow.add_step(class_name, name=name, handler=handler, after=self._after_for_to(),
                             graph_shape=graph_shape, function=function, full_event=full_event,
                             input_path=input_path, result_path=result_path, **class_args)

    def _flow_for_to(self) -> "FlowStep":
        if self._parent is None:
            raise GraphpackError(f"step {self.name!r}: .to() needs a step that belongs to a flow graph")
        return self._parent

    def _after_for_to(self) -> list | None:
        return [self.name]

    def set_flow(self, steps: list, force: bool = False) -> "BaseStep":
        """Replace the steps after this one with a chain of ``steps`` (dicts of ``to()``
        arguments, step objects or class names); returns the last step."""
        flow = self._flow_for_to()
        below = [n for n, s in flow.steps.items() if self.name in s.after]
        if below and not force:
            raise GraphpackError(f"set_flow() on step {self.name!r}: it already has steps after it "
                                 f"({', '.join(below)}); pass force=True to replace them")
        _drop_below(flow, self.name)
        return _chain(self, steps)

    def after_step(self, *names: str, append: bool = True) -> "BaseStep":
        """Run this step after the named steps (``append=False`` replaces the list)."""
        wanted = [n.name if isinstance(n, BaseStep) else n for n in names]
        self.after = (self.after + [n for n in wanted if n not in self.after]) if append else wanted
        return self

    def error_handler(self, name: str | None = None, class_name: Any = None, handler: Any = None,
                      before: list | str | None = None, function: str | None = None,
                      full_event: bool | None = None, input_path: str | None = None,
                      result_path: str | None = None, **class_args: Any) -> "BaseStep":
        """Send this step's failures to an error step; returns this step (not the handler)."""
        if class_name is None and handler is None:
            if name:  # a step added separately, maybe later (MLRun docs form); validated at build time
                self.on_error = name
                return self
            raise GraphpackError(f"step {self.name!r}: error_handler needs name=, class_name= or handler=")
        flow = self if isinstance(self, FlowStep) else self._parent
        if flow is None:
            raise GraphpackError(f"step {self.name!r}: error_handler needs a step inside a flow")
        if isinstance(self, FlowStep) and before:
            raise GraphpackError("graph error handler: 'before' cannot be set on the graph's own error handler")
        step = ErrorStep(class_name, dict(class_args), handler, name=name,
                         function=function, full_event=full_event, input_path=input_path,
                         result_path=result_path)
        step.name = step.name or _default_name(class_name, handler)
        step.before = _as_list(before)
        step.base_step = None if isinstance(self, FlowStep) else self.name
        last = flow._last_added
        flow._put(step)
        flow._last_added = last  # "$prev" stays the step, not its handler
        self.on_error = step.name
        return self

    def plot(self, filename: str | None = None, format: str | None = None, source: Any = None,
             targets: Any = None, **graph_attr: Any) -> Any:
        """Draw the graph (a flow or router) with graphviz; writes ``filename`` (its suffix sets the format).
        Build side only: a function's image does not ship the plotting code."""
        try:
            from .plot import plot_graph
        except ImportError:
            raise GraphpackError("graph.plot() is not available inside a function's image (plotting is build "
                                 "side: draw the graph with `graphpack graph`)") from None

        return plot_graph(self, filename=filename, format=format, **graph_attr)

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        for field in self._fields:
            value = getattr(self, field, None)
            if value not in (None, [], {}, False):
                out[field] = value
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class TaskStep(BaseStep):
    """Runs a class (``do``/``do_event``/handler method) or a function on each event."""

    kind = "task"
    _fields: tuple[str, ...] = ("class_name", "class_args", "handler", "after", "function", "full_event",
               "input_path", "result_path", "responder", "comment", "shape", "on_error",
               "skip_context")

    def __init__(self, class_name: Any = None, class_args: dict | None = None, handler: Any = None,
                 name: str | None = None, after: list | str | None = None,
                 full_event: bool | None = None, function: str | None = None,
                 responder: bool | None = None, input_path: str | None = None,
                 result_path: str | None = None, comment: str | None = None,
                 shape: str | None = None, skip_context: bool | None = None) -> None:
        super().__init__(name, after, function, comment, shape)
        self.class_args: dict = dict(class_args or {})
        self._class_object: Any = None  # a class object the user passed (not serialised)
        self._handler_object: Any = None
        self._described: dict = {}  # what a step object said about itself (to_dict)
        self.class_name = self._set_class(class_name)
        self.handler = self._set_handler(handler)
        self.full_event = full_event if full_event is not None else self._described.get("full_event")
        self.responder = responder
        self.input_path = input_path if input_path is not None else self._described.get("input_path")
        self.result_path = result_path if result_path is not None else self._described.get("result_path")
        self.skip_context = skip_context

    def _set_class(self, class_name: Any) -> str | None:
        if class_name is None or isinstance(class_name, str):
            return class_name
        if inspect.isclass(class_name):
            self._class_object = class_name
            return qualified_name(class_name)
        # an instance: record its class, and its own name, paths and init args
        self._class_object = type(class_name)
        described = describe_object(class_name)
        self.class_args = {**described.get("class_args", {}), **self.class_args}
        self._described = described
        return qualified_name(type(class_name))

    def _set_handler(self, handler: Any) -> str | None:
        if handler is None or isinstance(handler, str):
            return handler
        if callable(handler):
            self._handler_object = handler
            return getattr(handler, "__name__", None) or repr(handler)
        raise GraphpackError(f"step {self.name!r}: handler must be a name or a callable, got {handler!r}")

    def respond(self) -> "TaskStep":
        """Make this step's output the response."""
        self.responder = True
        return self

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.class_args:
            out["class_args"] = plain_args(self.class_args)
        return out


class ErrorStep(TaskStep):
    """A step that receives the events other steps failed on."""

    kind = "error_step"
    _fields = TaskStep._fields + ("before", "base_step")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.before: list = []
        self.base_step: str | None = None


class RouterStep(TaskStep):
    """A step whose class picks one of its routes per event (default: ModelRouter)."""

    kind = "router"
    _fields = TaskStep._fields + ("routes",)

    def __init__(self, class_name: Any = None, class_args: dict | None = None, handler: Any = None,
                 routes: dict | None = None, name: str | None = None, function: str | None = None,
                 input_path: str | None = None, result_path: str | None = None, **kw: Any) -> None:
        super().__init__(class_name, class_args, handler, name=name, function=function,
                         input_path=input_path, result_path=result_path, **kw)
        self._routes: dict[str, TaskStep] = {}
        for key, route in (routes or {}).items():
            self.add_route(key, route)

    @property
    def routes(self) -> dict[str, TaskStep]:
        return self._routes

    @routes.setter
    def routes(self, value: dict) -> None:
        self._routes = {}
        for key, route in (value or {}).items():
            self.add_route(key, route)

    def add_route(self, key: str, route: Any = None, class_name: Any = None, handler: Any = None,
                  function: str | None = None, **class_args: Any) -> TaskStep:
        """Add (or replace) a route; ``key`` may be ``name:version``."""
        if not key or not isinstance(key, str):
            raise GraphpackError(f"router {self.name!r}: a route needs a non-empty string key")
        if route is None and class_name is None and handler is None:
            raise GraphpackError(f"router {self.name!r}: route {key!r} needs route=, class_name= or handler=")
        if key not in self._routes and len(self._routes) >= MAX_ROUTES:
            raise GraphpackError(f"router {self.name!r}: at most {MAX_ROUTES} routes are allowed")
        if isinstance(route, dict):
            route = step_from_dict(key, route)
        elif route is None or not isinstance(route, TaskStep):
            if route is not None:
                class_name = route
            route = TaskStep(class_name, dict(class_args), handler, name=key,
                             function=function)
        route.name = key
        route.function = route.function or function
        route._parent = self  # type: ignore[assignment]
        self._routes[key] = route
        return route

    def clear_children(self, routes: list | None = None) -> None:
        for key in list(routes if routes is not None else self._routes):
            self._routes.pop(key, None)

    def __getitem__(self, key: str) -> TaskStep:
        return self._routes[key]

    def __delitem__(self, key: str) -> None:
        del self._routes[key]

    def __contains__(self, key: str) -> bool:
        return key in self._routes

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("routes", None)
        if self._routes:
            out["routes"] = {key: route.to_dict() for key, route in self._routes.items()}
        return out


class QueueStep(BaseStep):
    """A queue (stream) joining steps, usually steps of different functions."""

    kind = "queue"
    _fields = ("path", "shards", "retention_in_hours", "trigger_args", "options", "after",
               "function", "comment", "shape")

    def __init__(self, name: str | None = None, path: str | None = None, after: list | str | None = None,
                 shards: int | None = None, retention_in_hours: int | None = None,
                 trigger_args: dict | None = None, **options: Any) -> None:
        super().__init__(name, after)
        self.path = path
        self.shards = shards
        self.retention_in_hours = retention_in_hours
        self.trigger_args = trigger_args
        self.options = options

    def to(self, class_name: Any = None, name: str | None = None, handler: Any = None,
           graph_shape: str | None = None, function: str | None = None,
           full_event: bool | None = None, input_path: str | None = None,
           result_path: str | None = None, **class_args: Any) -> BaseStep:
        """Add a step after the queue; it must name the ``function`` that consumes the queue."""
        if not function:
            step_name = name or _default_name(class_name, handler)
            raise GraphpackError(
                f"step {step_name!r} must set function=, because it follows queue {self.name!r}")
        return super().to(class_name, name, handler, graph_shape, function, full_event,
                          input_path, result_path, **class_args)

    @property
    def full_event(self) -> bool | None:
        return self.options.get("full_event")

    def to_dict(self) -> dict:
        out = super().to_dict()
        if not self.options:
            out.pop("options", None)
        if self.path is not None:
            out["path"] = self.path
        return out


class FlowStep(BaseStep):
    """A DAG of steps (the ``flow`` topology's root is a RootFlowStep)."""

    kind = "flow"
    _fields = ("steps", "engine", "on_error", "after", "function", "comment")

    def __init__(self, name: str | None = None, steps: dict | None = None, engine: str | None = None,
                 after: list | None = None, final_step: str | None = None) -> None:
        super().__init__(name, after)
        if engine is not None and engine not in ENGINES:
            raise GraphpackError(f"graph: unknown engine {engine!r}, use 'sync' or 'async'")
        self.engine = engine
        self.final_step = final_step
        self._steps: dict[str, BaseStep] = {}
        self._last_added: BaseStep | None = None
        for key, value in (steps or {}).items():
            self._put(step_from_dict(key, value) if isinstance(value, dict) else value)

    @property
    def steps(self) -> dict[str, BaseStep]:
        return self._steps

    def _put(self, step: BaseStep) -> BaseStep:
        if not step.name:
            raise GraphpackError("graph: every step needs a name")
        step._parent = self
        self._steps[step.name] = step
        self._last_added = step
        return step

    def _flow_for_to(self) -> "FlowStep":
        return self

    def _after_for_to(self) -> list | None:
        return None  # graph.to(...) starts a new branch (a start step)

    def add_step(self, class_name: Any = None, name: str | None = None, handler: Any = None,
                 after: Any = None, before: Any = None, graph_shape: str | None = None,
                 function: str | None = None, full_event: bool | None = None,
                 input_path: str | None = None, result_path: str | None = None,
                 **class_args: Any) -> BaseStep:
        """Add a step anywhere: ``after`` a step (name, list, or "$prev"), ``before`` another."""
        step = make_step(class_name, name, handler, function=function, full_event=full_event,
                         input_path=input_path, result_path=result_path, shape=graph_shape,
                         class_args=class_args)
        return self.insert_step(step.name, step, after, before)

    def insert_step(self, key: str | None, step: BaseStep, after: Any = None, before: Any = None) -> BaseStep:
        key = step.name = key or step.name
        if after == "$prev":
            after = [self._last_added.name] if self._last_added is not None else None
        after_list = [a.name if isinstance(a, BaseStep) else a for a in _as_list(after)]
        after_list = [a for a in after_list if a]  # after="" means a start step
        if key in self._steps and self._upstream_of(key, [str(a) for a in after_list]):
            raise GraphpackError(f"step {key!r}: field 'name': the graph already has a step named {key!r} "
                                 "before this one; step names must be unique")
        for name in after_list:
            if name not in self._steps:
                raise GraphpackError(f"step {key!r}: cannot add it after {name!r}, there is no step named {name!r}")
        if before is not None:
            before_name = before.name if isinstance(before, BaseStep) else before
            if before_name not in self._steps:
                raise GraphpackError(f"step {key!r}: cannot add it before {before_name!r}, there is no such step")
            if before_name == key or before_name in after_list:
                raise GraphpackError(f"step {key!r}: graph loop, it cannot be both before and after {before_name!r}")
            target = self._steps[before_name]
            if not after_list:
                after_list = list(target.after)
            target.after = [key]
        step.after = after_list
        return self._put(step)

    def _upstream_of(self, key: str, names: list[str]) -> bool:
        """True when step ``key`` is one of ``names`` or runs before one of them."""
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name == key:
                return True
            if name not in seen and name in self._steps:
                seen.add(name)
                todo += list(self._steps[name].after)
        return False

    def set_flow(self, steps: list, force: bool = False) -> BaseStep:
        """Replace all steps with a chain of ``steps`` (dicts of ``to()`` arguments, step objects
        or class names); returns the last step."""
        if self._steps and not force:
            raise GraphpackError(f"set_flow() on {self.name or 'the graph'!r}: it already has steps "
                                 f"({', '.join(self._steps)}); pass force=True to replace them")
        self._steps = {}
        self._last_added = None
        return _chain(self, steps)

    def clear_children(self, steps: list | None = None) -> None:
        for key in list(steps if steps is not None else self._steps):
            self._steps.pop(key, None)

    def path_to_step(self, path: str) -> BaseStep:
        node: Any = self
        for part in path.replace(".", "/").split("/"):
            if not part:
                continue
            children = node.steps if isinstance(node, FlowStep) else getattr(node, "routes", {})
            if part not in children:
                raise GraphpackError(f"step {part!r} does not exist in the graph under {node.name or 'graph'!r}")
            node = children[part]
        return node

    def __getitem__(self, name: str) -> BaseStep:
        if name not in self._steps:
            raise GraphpackError(f"step {name!r} does not exist in the graph")
        return self._steps[name]

    def __delitem__(self, name: str) -> None:
        del self._steps[name]

    def __contains__(self, name: str) -> bool:
        return name in self._steps

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("steps", None)
        out["steps"] = {name: step.to_dict() for name, step in self._steps.items()}
        return out


class RootFlowStep(FlowStep):
    """The root of a ``flow`` topology (serialised without ``kind`` as in MLRun)."""

    kind = "root"

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("kind", None)
        return out


# -- helpers ---------------------------------------------------------------------------

def make_step(class_name: Any = None, name: str | None = None, handler: Any = None,
              function: str | None = None, full_event: bool | None = None,
              input_path: str | None = None, result_path: str | None = None,
              shape: str | None = None, class_args: dict | None = None) -> BaseStep:
    """Turn builder arguments into the right step kind (task, router, queue, remote)."""
    class_args = dict(class_args or {})
    if isinstance(class_name, BaseStep):
        step = class_name
        step.name = name or step.name
        return step
    if isinstance(class_name, str) and class_name in QUEUE_ALIASES:
        if not name:
            raise GraphpackError("a queue step needs a name")
        if "path" not in class_args:
            raise GraphpackError(f"queue {name!r} needs path= (use path='' for an in-process queue)")
        if full_event is not None:
            class_args["full_event"] = full_event
        return QueueStep(name, **class_args)
    if isinstance(class_name, str) and class_name in REMOTE_ALIASES:
        class_name = "graphpack.serving.RemoteStep"
    if (isinstance(class_name, str) and class_name.startswith(ROUTER_MARK)) or _is_router(class_name):
        if isinstance(class_name, str):
            class_name = class_name[1:] or None
        step = RouterStep(class_name, dict(class_args), handler, name=name,
                          function=function, input_path=input_path, result_path=result_path)
        step.name = name or _default_name(class_name, handler) or "router"
        step.shape = shape
        return step
    step = TaskStep(class_name, dict(class_args), handler, name=name,
                    function=function, full_event=full_event, input_path=input_path,
                    result_path=result_path, shape=shape)
    step.name = name or _default_name(class_name, handler)
    if not step.name:
        raise GraphpackError("a step needs class_name=, handler= or name=")
    return step


def step_from_dict(name: str | None, data: dict) -> BaseStep:
    """Rebuild a step from its ``to_dict()`` form."""
    data = dict(data)
    kind = data.pop("kind", "task")
    after = data.pop("after", None)
    on_error = data.pop("on_error", None)
    step: BaseStep
    if kind == "queue":
        options = data.pop("options", {}) or {}
        step = QueueStep(name, after=after, **data, **options)
    elif kind in ("flow", "root"):
        step = (RootFlowStep if kind == "root" else FlowStep)(name, steps=data.get("steps"),
                                                              engine=data.get("engine"), after=after)
    elif kind == "router":
        routes = data.pop("routes", None)
        step = RouterStep(name=name, **data)
        for key, route in (routes or {}).items():
            step.add_route(key, route)
        step.after = _as_list(after)
    elif kind in ("task", "error_step"):
        before = data.pop("before", None)
        base = data.pop("base_step", None)
        step = (ErrorStep if kind == "error_step" else TaskStep)(name=name, after=after, **data)
        if isinstance(step, ErrorStep):
            step.before = _as_list(before)
            step.base_step = base
    else:
        raise GraphpackError(f"step {name!r}: unknown kind {kind!r}")
    step.on_error = on_error
    return step


def _chain(start: BaseStep, steps: list) -> BaseStep:
    """``start.to(a).to(b)...``: dicts are ``to()`` keyword arguments."""
    step = start
    for item in steps:
        step = step.to(**item) if isinstance(item, dict) else step.to(item)
    return step


def _drop_below(flow: "FlowStep", name: str | None) -> None:
    """Remove every step downstream of ``name`` in ``flow``."""
    doomed: set[str] = set()
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for key, step in flow.steps.items():
            if current in step.after and key not in doomed:
                doomed.add(key)
                frontier.append(key)
    for key in doomed:
        flow.steps.pop(key, None)


def _is_router(class_name: Any) -> bool:
    cls = class_name if inspect.isclass(class_name) else type(class_name) if class_name is not None and not isinstance(class_name, str) else None
    return cls is not None and any(c.__name__ in ("BaseModelRouter", "ModelRouter") for c in cls.__mro__)


def _default_name(class_name: Any, handler: Any) -> str | None:
    if class_name is not None:
        if isinstance(class_name, str):
            return class_name.split(".")[-1] or None
        if inspect.isclass(class_name):
            return class_name.__name__
        own = getattr(class_name, "name", None)  # a step object keeps its own name
        return own if isinstance(own, str) and own else type(class_name).__name__
    if handler is not None:
        return handler if isinstance(handler, str) else getattr(handler, "__name__", None)
    return None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v.name if isinstance(v, BaseStep) else v for v in value]
    return [value.name if isinstance(value, BaseStep) else value]
