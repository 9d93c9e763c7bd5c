"""Draw a graph with graphviz: tasks as ellipses, routers as clusters with their routes,
queues as ``cds``, the start as an ``egg``, error-handler edges dashed. With ``root_function``
each function's steps are boxed and named, and every node carries the SVG id ``step:<full name>``
(``graphpack ui`` overlays live figures on them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import GraphpackError
from .steps import BaseStep, ErrorStep, FlowStep, QueueStep, RouterStep

FORMATS = ("svg", "png", "pdf", "dot", "jpg")
SPARE_LINE = "\n" + "\u2007" * 22  # figure spaces: graphviz keeps them, so the node is made wide enough


def _node_id(name: str) -> str:
    return name.replace(":", "_")


def plot_graph(graph: BaseStep | None, filename: str | None = None, format: str | None = None,
               root_function: str | None = None, spare_lines: int = 0, **graph_attr: Any) -> Any:
    """Return a ``graphviz.Digraph``; with ``filename``, also render it (suffix sets the format).
    ``root_function`` (the root function's name) boxes the steps by the function they run in;
    ``spare_lines`` adds lines under each step's name (``graphpack ui`` writes figures there)."""
    try:
        import graphviz
    except ImportError:  # pragma: no cover - graphviz is a dependency
        raise GraphpackError("plotting needs the graphviz Python package (pip install graphviz)") from None
    if graph is None:
        raise GraphpackError("the function has no graph to plot")
    dot = graphviz.Digraph("graphpack", graph_attr={k: str(v) for k, v in graph_attr.items()})
    dot.node("_start", "start", shape="egg", style="filled", fillcolor="lightgrey")
    if isinstance(graph, RouterStep):
        _router(dot, graph, root_function is not None, SPARE_LINE * spare_lines)
        dot.edge("_start", _node_id(graph.name or "router"))
    elif isinstance(graph, FlowStep):
        _flow(dot, graph, root_function, SPARE_LINE * spare_lines)
    if filename:
        path = Path(filename)
        fmt = format or path.suffix.lstrip(".") or "png"
        if fmt not in FORMATS:
            raise GraphpackError(f"plot: unsupported format {fmt!r} (use one of {', '.join(FORMATS)})")
        dot.format = fmt
        target = path.with_suffix("") if path.suffix.lstrip(".") == fmt else path
        try:
            dot.render(str(target), cleanup=True)
        except graphviz.backend.ExecutableNotFound:
            raise GraphpackError("plot: the graphviz 'dot' program is not installed (apt-get install graphviz)") from None
    elif format:
        dot.format = format
    return dot


def _ids(step: BaseStep, on: bool) -> dict:
    return {"id": f"step:{step.fullname}"} if on else {}


def _router(dot: Any, router: RouterStep, ids: bool = False, spare: str = "") -> None:
    name = _node_id(router.name or "router")
    with dot.subgraph(name=f"cluster_{name}") as sub:
        sub.attr(label=router.name or "router", style="rounded")
        sub.node(name, (router.name or "router") + spare, shape="doubleoctagon", **_ids(router, ids))
        for key, route in router.routes.items():
            sub.node(f"{name}__{_node_id(key)}", key + spare, shape="ellipse", **_ids(route, ids))
            sub.edge(name, f"{name}__{_node_id(key)}")


def _flow(dot: Any, flow: FlowStep, root_function: str | None = None, spare: str = "") -> None:
    boxes: dict[str, list[tuple[str, BaseStep]]] = {}
    for name, step in flow.steps.items():
        if root_function is None or isinstance(step, QueueStep):  # a queue joins functions: no box
            _flow_node(dot, name, step, root_function is not None, spare)
        else:
            boxes.setdefault(getattr(step, "function", None) or root_function, []).append((name, step))
    for function, members in boxes.items():
        with dot.subgraph(name=f"cluster_function_{_node_id(function)}") as sub:
            sub.attr(label=f"function {function}", style="rounded,filled", fillcolor="#f4f6fa", color="#8a94a6")
            for name, step in members:
                _flow_node(sub, name, step, True, spare)
    _flow_edges(dot, flow)


def _flow_node(dot: Any, name: str, step: BaseStep, ids: bool, spare: str = "") -> None:
    label = (name if ids or not getattr(step, "function", None) else f"{name}\n({step.function})") + spare
    if isinstance(step, RouterStep):
        _router(dot, step, ids, spare)
    elif isinstance(step, QueueStep):
        dot.node(_node_id(name), label, shape="cds", **_ids(step, ids))
    else:
        dot.node(_node_id(name), label, shape="ellipse", style="dashed" if isinstance(step, ErrorStep) else "solid",
                 **_ids(step, ids))


def _flow_edges(dot: Any, flow: FlowStep) -> None:
    for name, step in flow.steps.items():
        if not step.after and not isinstance(step, ErrorStep) and name not in _error_targets(flow):
            dot.edge("_start", _node_id(name))
        for parent in step.after:
            dot.edge(_node_id(parent), _node_id(name))
        if step.on_error:
            dot.edge(_node_id(name), _node_id(step.on_error), style="dashed", label="error")
        if isinstance(step, ErrorStep):
            for target in step.before:
                dot.edge(_node_id(name), _node_id(target), style="dashed")


def _error_targets(flow: FlowStep) -> set:
    return {s.on_error for s in flow.steps.values() if s.on_error} | {flow.on_error}
