"""Hypothesis-drawn graphs of built-in steps for the differential test.

A graph is a tree of steps over ``{"v": int}`` bodies: each step hangs under an earlier one
(a chain when every step hangs under the one before) and is one of a few built-in forms that
both packages implement (a handler expression, ``storey.Map``, ``storey.Extend``, a class with
arguments, a handler with input/result paths). One leaf responds. The sync engine gets chains
only (MLRun's sync engine has no branches).
"""
from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .cases import Case, post

ATOMS = ("expr", "map", "extend", "class", "paths")
SYNC_ATOMS = ("expr", "class", "paths")  # MLRun's sync engine cannot run storey classes


def _step_code(index: int, atom: str, k: int) -> str:
    name = f"s{index}"
    if atom == "expr":
        return f"handler=\"({{**event, 'v': event['v'] + {k}}})\", name={name!r}"
    if atom == "map":
        return f"class_name='storey.Map', name={name!r}, _fn=\"({{**event, 'v': event['v'] * {k}}})\""
    if atom == "extend":
        return f"class_name='storey.Extend', name={name!r}, _fn=\"({{'{name}': event['v'] - {k}}})\""
    if atom == "class":
        return f"class_name='Inc', name={name!r}, by={k}"
    return f"handler='(event + {k})', name={name!r}, input_path='v', result_path='v'"


@st.composite
def graphs(draw: Any) -> dict:
    engine = draw(st.sampled_from(["sync", "async"]))
    size = draw(st.integers(1, 6))
    parents = [None] + [i - 1 if engine == "sync" else draw(st.integers(0, i - 1)) for i in range(1, size)]
    atoms = [draw(st.sampled_from(ATOMS if engine == "async" else SYNC_ATOMS)) for _ in range(size)]
    ks = [draw(st.integers(-3, 5)) for _ in range(size)]
    leaves = [i for i in range(size) if i not in parents]
    responder = draw(st.sampled_from(leaves))
    return {"engine": engine, "parents": parents, "atoms": atoms, "ks": ks, "responder": responder,
            "v": draw(st.integers(-10, 10))}


def to_case(number: int, g: dict) -> Case:
    lines = ["fn = api.new_function('gen', kind='serving')",
             f"graph = fn.set_topology('flow', engine={g['engine']!r})"]
    for i, (parent, atom, k) in enumerate(zip(g["parents"], g["atoms"], g["ks"])):
        after = "" if parent is None else f", after='s{parent}'"
        respond = ".respond()" if i == g["responder"] else ""
        lines.append(f"graph.add_step({_step_code(i, atom, k)}{after}){respond}")
    lines.append("server = fn.to_mock_server()")
    shape = "chain" if all(p in (None, i - 1) for i, p in enumerate(g["parents"])) else "tree"
    return Case(f"gen-{number:02d}-{g['engine']}-{shape}", "\n".join(lines) + "\n", [post({"v": g["v"]})])


def generated_cases(count: int = 40) -> list[Case]:
    """``count`` graphs drawn deterministically (the same ones on every run)."""
    drawn: list[dict] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(graphs())
    def collect(g: dict) -> None:
        drawn.append(g)

    collect()
    unique = {repr(g): g for g in drawn}
    return [to_case(i, g) for i, g in enumerate(unique.values())]
