"""How a step given as a class or an object is recorded in the graph: its class path, and the
arguments that recreate it (its ``to_dict()`` when it has one, else the ``__init__`` arguments
it keeps as attributes)."""
from __future__ import annotations

import inspect
from typing import Any

# __init__ parameters the runtime injects; never recorded as class_args of an instance
_INJECTED = {"self", "context", "name", "input_path", "result_path", "full_event", "graph_step", "routes"}


def qualified_name(cls: type) -> str:
    module = getattr(cls, "__module__", "") or ""
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


def describe_object(obj: Any) -> dict:
    """What a step object says about itself: its ``to_dict()`` (graphpack.serving.utils.StepToDict,
    or MLRun's), else the init args it keeps as attributes."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            described = to_dict()
        except TypeError:
            described = None
        if isinstance(described, dict) and isinstance(described.get("class_args", {}), dict):
            return described
    return {"class_args": instance_args(obj)}


def instance_args(obj: Any) -> dict:
    """The init args an instance keeps as attributes."""
    if hasattr(obj, "_init_args"):
        return dict(obj._init_args)
    args: dict = {}
    try:
        params = inspect.signature(type(obj).__init__).parameters
    except (TypeError, ValueError):
        return args
    for pname, param in params.items():
        if pname in _INJECTED or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        value = getattr(obj, pname, getattr(obj, "_" + pname, None))
        if value is not None and value != param.default:
            args[pname] = value
    return args


def plain_args(value: Any) -> Any:
    """class_args as plain data (callables become their names)."""
    if isinstance(value, dict):
        return {k: plain_args(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_args(v) for v in value]
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__name__", repr(value))
    return value
