"""``StepToDict``: step objects describe themselves as graph steps (``to_dict()``, ``to_yaml()``).

A step given to ``graph.to(obj)`` / ``add_route(key, obj)`` / ``add_model(key, obj)`` is saved as
its class path, its name, input/result paths and the arguments its ``__init__`` takes that it
keeps as attributes (plus extra keyword arguments kept in ``kwargs``/``_kwargs``/``_params``),
so the runtime can create the same object again in a deployed function.
"""
from __future__ import annotations

import inspect
from typing import Any

# arguments the runtime passes itself; not saved as class_args
_RUNTIME_ARGS = frozenset({"self", "context", "name", "input_path", "result_path", "full_event",
                           "graph_step", "routes", "kwargs", "kw", "class_args"})
_EXTRA_ATTRS = ("kwargs", "_kwargs", "_params", "_init_args")


class StepToDict:
    """Mixin: ``to_dict()`` / ``to_yaml()`` of a step object, in a graph step's form."""

    def to_dict(self) -> dict:
        cls = type(self)
        args: dict[str, Any] = {}
        try:
            params = inspect.signature(cls.__init__).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        for key, param in params.items():
            if key in _RUNTIME_ARGS or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            value = getattr(self, key, None)
            if value is not None:
                args[key] = value
        for attr in _EXTRA_ATTRS:
            extra = getattr(self, attr, None)
            if isinstance(extra, dict):
                args.update({k: v for k, v in extra.items() if k not in _RUNTIME_ARGS})
                break
        module = cls.__module__
        out: dict[str, Any] = {
            "class_name": f"{module}.{cls.__qualname__}" if module not in ("__main__", "builtins") else cls.__qualname__,
            "name": getattr(self, "name", None) or cls.__name__,
            "class_args": args,
        }
        for key in ("input_path", "result_path"):
            value = getattr(self, key, None)
            if value is not None:
                out[key] = value
        if getattr(self, "full_event", None):
            out["full_event"] = True
        kind = getattr(cls, "_step_kind", None)
        if kind:
            out["kind"] = kind
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
