"""Build-time check that the class and handler names a function runs exist in its code.

A class left outside the ``# graphpack: start/end`` markers, or a typo, would otherwise only
show when the deployed function fails to start. Names are checked statically (top-level
definitions and imports of the packaged code, parsed with ``ast``; nothing is executed):
plain names must be defined there or be graphpack built-ins; dotted names outside the user's
code are not checked here (their packages may not be installed where the build runs).
"""
from __future__ import annotations

import ast
from typing import Any

from ..errors import GraphpackError
from ..graph.steps import FlowStep, RouterStep
from ..runtime.flow import is_local
from ..runtime.resolve import resolve_object
from .usercode import CodeFile


def defined_names(code: CodeFile, where: str) -> tuple[set[str], bool]:
    """(top-level names the module defines or imports, whether it has a ``*`` import)."""
    try:
        tree = ast.parse(code.text, filename=code.origin)
    except SyntaxError as exc:
        raise GraphpackError(f"{where}: code from {code.origin!r} has a syntax error on line {exc.lineno}: "
                             f"{exc.msg}") from None
    names: set[str] = set()
    star = False
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node in tree.body:
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
    return names, star


def _steps(graph: Any, current: str) -> list:
    """The steps (and routes) function ``current`` runs."""
    steps: list
    if isinstance(graph, RouterStep):
        steps = [graph]
    elif isinstance(graph, FlowStep):
        steps = [s for s in graph.steps.values() if is_local(s, current)]
    else:
        return []
    for step in list(steps):
        steps += list((getattr(step, "routes", None) or {}).values())
    return steps


def check_names(graph: Any, current: str, code: tuple[CodeFile, ...] | list[CodeFile], where: str) -> None:
    """Raise GraphpackError naming the step and field whose class/handler the code lacks."""
    defined: set[str] = set()
    star = False
    for code_file in code:
        names, has_star = defined_names(code_file, where)
        defined |= names
        star = star or has_star
    modules = {c.module for c in code}
    for step in _steps(graph, current):
        for field, kind in (("class_name", "class"), ("handler", "handler")):
            name = getattr(step, field, None)
            if not isinstance(name, str) or not name or name[0] in "($*>" or star:
                continue
            if "." in name:
                module, _, short = name.rpartition(".")
                if module not in ("__main__", "") and module.split(".")[-1] not in modules:
                    continue  # an importable path (or a saved __main__/script path): not checkable here
                name = short
            if name in defined or resolve_object(name, [], kind) is not None:
                continue
            origin = ", ".join(repr(c.origin) for c in code) if code else "no code file (set spec.filename)"
            raise GraphpackError(f"{where}: step {step.name!r}: field {field}: {name!r} is not defined in the "
                                 f"function's code ({origin}) nor a graphpack built-in")
