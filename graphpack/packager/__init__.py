"""Packaging: function plans, Nuclio function configs and build contexts (``graphpack build``).

Build-time only: nothing under runtime/, serving/, handlers/ or queues/ imports this package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .context import BuildContext, plan_and_render, summary, write_contexts
from .plan import TARGETS, FunctionPlan, QueueInput, plan_function

DEFAULT_OUTPUT = "build"


def function_configs(fn: Any, project: str | None = None, target: str = "nuclio", **options: Any) -> dict[str, dict]:
    """The function.yaml dicts of a function and its children, by directory name (nothing written)."""
    return {c.plan.function: c.config for c in plan_and_render(fn, project, target, **options)}


def build_function(fn: Any, output: str | Path = DEFAULT_OUTPUT, project: str | None = None,
                   target: str = "nuclio", **options: Any) -> dict:
    """Write the build contexts of ``fn`` (root and children) under ``output``; returns the summary."""
    contexts = plan_and_render(fn, project, target, **options)
    write_contexts(contexts, output)
    return summary(contexts, output)


def find_function(project: Any, name: str) -> tuple[str, str]:
    """(root, child) for a project function (child "") or a child function of one of them;
    an unknown name is an error naming every function and child."""
    from ..errors import GraphpackError

    functions = dict(project.__dict__.get("functions") or {})
    if name in functions:
        return name, ""
    for root, fn in functions.items():
        if name in fn.spec.child_functions:
            return root, name
    known = [f"{root}" + "".join(f", {child} (child of {root})" for child in fn.spec.child_functions)
             for root, fn in functions.items()]
    raise GraphpackError(f"project {project.name!r} has no function {name!r} (functions: {', '.join(known) or 'none'})")


def project_contexts(project: Any, functions: list[str] | None, target: str, action: str = "build",
                     children_first: bool = False, **options: Any) -> list[BuildContext]:
    """The build contexts of the named functions (default: all), each root before its children, or
    children first (deploy order). A root function brings its children; a child function's name
    selects that child alone."""
    from ..errors import GraphpackError

    names = list(functions) if functions else list(dict(project.__dict__.get("functions") or {}))
    if not names:
        raise GraphpackError(f"project {project.name!r} has no functions to {action}")
    wanted: dict[str, set[str]] = {}
    for name in names:
        root, child = find_function(project, name)
        wanted.setdefault(root, set()).add(child or "*")
    contexts = []
    for root, parts in wanted.items():
        rendered = plan_and_render(project.functions[root], project.name, target, **dict(options))
        contexts += [c for c in rendered if "*" in parts or c.plan.current_function in parts]
    return sorted(contexts, key=lambda c: (c.plan.root, c.plan.is_root)) if children_first else contexts


def build_project(project: Any, output: str | Path = DEFAULT_OUTPUT, functions: list[str] | None = None,
                  target: str = "nuclio", **options: Any) -> dict:
    """Build the named functions of a project (all by default; a child's name builds that child) in
    one all-or-nothing write."""
    contexts = project_contexts(project, functions, target, **options)
    write_contexts(contexts, output)
    return summary(contexts, output)


__all__ = [
    "DEFAULT_OUTPUT", "TARGETS", "BuildContext", "FunctionPlan", "QueueInput", "build_function",
    "build_project", "find_function", "function_configs", "project_contexts", "plan_and_render", "plan_function", "summary", "write_contexts",
]
