"""Resolve class and handler names to Python objects.

Lookup order: the given namespaces (dicts or modules; the user's code first), then the
``storey.X`` / ``mlrun.serving.X`` / ``mlrun.X`` aliases for graphpack's own steps, then a
regular import of a dotted path.
"""
from __future__ import annotations

import builtins
import importlib
import inspect
from types import ModuleType
from typing import Any, Callable

from ..errors import GraphpackError

ALIAS_PREFIXES = ("storey.", "mlrun.serving.", "mlrun.", "graphpack.serving.", "graphpack.")


def _lookup(namespace: Any, dotted: str) -> Any:
    parts = dotted.split(".")
    if isinstance(namespace, dict):
        if parts[0] not in namespace:
            return None
        obj = namespace[parts[0]]
    elif isinstance(namespace, ModuleType):
        obj = getattr(namespace, parts[0], None)
    else:
        return None
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _builtin_alias(name: str) -> Any:
    for prefix in ALIAS_PREFIXES:
        if name.startswith(prefix):
            short = name[len(prefix):].split(".")[-1]
            serving = importlib.import_module("graphpack.serving")
            return getattr(serving, short, None)
    return None


def _import(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    while module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            attr = module_name.rpartition(".")[2] + "." + attr
            module_name = module_name.rpartition(".")[0]
            continue
        return _lookup(module, attr)
    return None


def resolve_object(name: str, namespaces: list, kind: str = "class") -> Any:
    """Find ``name`` (plain or dotted) in the namespaces, the aliases or by import."""
    for namespace in namespaces:
        obj = _lookup(namespace, name)
        if obj is not None:
            return obj
    if "." in name:
        # a saved "module.Class" of a class defined in the user's code: look up its last part
        short = name.rpartition(".")[2]
        module = name.rpartition(".")[0]
        if module in ("__main__", "") or module.split(".")[-1] in _namespace_modules(namespaces):
            for namespace in namespaces:
                obj = _lookup(namespace, short)
                if obj is not None:
                    return obj
        obj = _builtin_alias(name)
        if obj is not None:
            return obj
        obj = _import(name) or _lookup(builtins, name)  # "json.dumps", "str.upper"
        if obj is not None:
            return obj
        for namespace in namespaces:  # last resort: the short name in the user's code
            obj = _lookup(namespace, short)
            if obj is not None:
                return obj
    else:
        obj = _builtin_alias("graphpack.serving." + name)
        if obj is not None:
            return obj
        if kind == "handler" and hasattr(builtins, name):
            return getattr(builtins, name)
    return None


def _namespace_modules(namespaces: list) -> set:
    names = set()
    for namespace in namespaces:
        if isinstance(namespace, ModuleType):
            names.add(namespace.__name__.split(".")[-1])
        elif isinstance(namespace, dict) and "__name__" in namespace:
            names.add(str(namespace["__name__"]).split(".")[-1])
    return names


def resolve_class(name: Any, namespaces: list, step: str) -> type:
    """The class a step names; GraphpackError naming the step when it cannot be found."""
    if inspect.isclass(name):
        return name
    obj = resolve_object(name, namespaces, "class")
    if obj is None:
        raise GraphpackError(f"step {step!r}: class {name!r} not found (define or import it in the "
                             "function's code, or pass namespace= to to_mock_server)")
    if not inspect.isclass(obj):
        raise GraphpackError(f"step {step!r}: {name!r} is not a class")
    return obj


def resolve_handler(handler: Any, namespaces: list, step: str) -> Callable:
    """A handler: a callable, ``"(expression of event)"``, a name, or ``module.function``."""
    if callable(handler):
        return handler
    if not isinstance(handler, str) or not handler:
        raise GraphpackError(f"step {step!r}: handler must be a name or a callable")
    text = handler.strip()
    if text.startswith("(") and text.endswith(")"):
        scope: dict = {}
        for namespace in namespaces:
            if isinstance(namespace, dict):
                scope.update(namespace)
        try:
            return eval(f"lambda event: {text}", scope)  # noqa: S307 - the user's own expression
        except SyntaxError as exc:
            raise GraphpackError(f"step {step!r}: handler expression {text!r} is not valid Python: {exc.msg}") from None
    obj = resolve_object(text, namespaces, "handler")
    if obj is None or not callable(obj):
        raise GraphpackError(f"step {step!r}: handler {text!r} not found")
    return obj
