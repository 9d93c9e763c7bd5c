"""Checks of the values a build writes out (spec.json, function.yaml): every value is JSON, and
no value is a secret copied out of the build environment (secrets are read at run time)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..errors import GraphpackError
from ..graph.steps import FlowStep, RouterStep

MIN_SECRET_LENGTH = 4  # shorter values ("1", "on") are too likely to match by chance


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf; a value that is not JSON comes back as itself to be named."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield f"{path}[{key!r}]", _BadKey(key)
                continue
            yield from _walk(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


class _BadKey:
    def __init__(self, key: Any) -> None:
        self.key = key


def _steps(graph: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    children = graph.steps if isinstance(graph, FlowStep) else graph.routes if isinstance(graph, RouterStep) else {}
    for name, step in children.items():
        label = f"{prefix}{name}"
        yield label, step
        yield from _steps(step, f"{label}/")


def build_values(fn: Any) -> Iterator[tuple[str, Any]]:
    """Every user value a build writes, by the field that holds it."""
    yield from _walk(dict(fn.spec.parameters or {}), "field spec.parameters")
    yield from _walk(dict(fn.spec.env or {}), "field spec.env")
    graph = fn.spec.graph
    if graph is not None:
        yield from _walk(dict(getattr(graph, "class_args", None) or {}), "graph: field class_args")
        for name, step in _steps(graph):
            yield from _walk(dict(getattr(step, "class_args", None) or {}), f"step {name!r}: field class_args")


def secret_names(fn: Any) -> list[str]:
    """The environment variables ``with_secrets("env", ...)`` reads at run time."""
    names: list[str] = []
    for source in fn.spec.secret_sources:
        if source.get("kind") == "env":
            value = source.get("source")
            names += list(value.values()) if isinstance(value, dict) else list(value or [])
    return names


def check_build_values(fn: Any, where: str) -> None:
    """One-line errors: a value that is not JSON, or one that equals a secret in this environment."""
    secrets = {os.environ[name]: name for name in secret_names(fn)
               if len(os.environ.get(name, "")) >= MIN_SECRET_LENGTH}
    for path, value in build_values(fn):
        if isinstance(value, _BadKey):
            raise GraphpackError(f"{where}: {path}: key {value.key!r} is a {type(value.key).__name__}; "
                                 "keys must be strings (the value is written as JSON)")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise GraphpackError(f"{where}: {path} is a {type(value).__name__}, which is not JSON; use strings, "
                                 "numbers, booleans, None, lists and dicts (the value is written into the build)")
        if isinstance(value, str) and value in secrets:
            raise GraphpackError(f"{where}: {path} holds the value of secret ${secrets[value]} from this environment "
                                 f"and would be written into the build; read it at run time instead "
                                 f"(fn.with_secrets('env', [{secrets[value]!r}]) and context.get_secret"
                                 f"({secrets[value]!r}))")
