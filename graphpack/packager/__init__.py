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


def build_project(project: Any, output: str | Path = DEFAULT_OUTPUT, functions: list[str] | None = None,
                  target: str = "nuclio", **options: Any) -> dict:
    """Build the named functions of a project (all by default) in one all-or-nothing write."""
    from ..errors import GraphpackError

    names = list(functions) if functions else list(project.functions)
    if not names:
        raise GraphpackError(f"project {project.name!r} has no functions to build")
    contexts = []
    for name in names:
        contexts += plan_and_render(project.get_function(name), project.name, target, **dict(options))
    write_contexts(contexts, output)
    return summary(contexts, output)


__all__ = [
    "DEFAULT_OUTPUT", "TARGETS", "BuildContext", "FunctionPlan", "QueueInput", "build_function",
    "build_project", "function_configs", "plan_and_render", "plan_function", "summary", "write_contexts",
]
