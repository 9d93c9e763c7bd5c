"""Draw a graph with graphviz: tasks as ellipses, routers as clusters with their routes,
queues as ``cds``, the start as an ``egg``, error-handler edges dashed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import GraphpackError
from .steps import BaseStep, ErrorStep, FlowStep, QueueStep, RouterStep

FORMATS = ("svg", "png", "pdf", "dot", "jpg")


def _node_id(name: str) -> str:
    return name.replace(":", "_")


def plot_graph(graph: BaseStep | None, filename: str | None = None, format: str | None = None,
               **graph_attr: Any) -> Any:
    """Return a ``graphviz.Digraph``; with ``filename``, also render it (suffix sets the format)."""
    try:
        import graphviz
    except ImportError:  # pragma: no cover - graphviz is a dependency
        raise GraphpackError("plotting needs the graphviz Python package (pip install graphviz)") from None
    if graph is None:
        raise GraphpackError("the function has no graph to plot")
    dot = graphviz.Digraph("graphpack", graph_attr={k: str(v) for k, v in graph_attr.items()})
    dot.node("_start", "start", shape="egg", style="filled", fillcolor="lightgrey")
    if isinstance(graph, RouterStep):
        _router(dot, graph)
        dot.edge("_start", _node_id(graph.name or "router"))
    elif isinstance(graph, FlowStep):
        _flow(dot, graph)
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


def _router(dot: Any, router: RouterStep) -> None:
    name = _node_id(router.name or "router")
    with dot.subgraph(name=f"cluster_{name}") as sub:
        sub.attr(label=router.name or "router", style="rounded")
        sub.node(name, router.name or "router", shape="doubleoctagon")
        for key in router.routes:
            sub.node(f"{name}__{_node_id(key)}", key, shape="ellipse")
            sub.edge(name, f"{name}__{_node_id(key)}")


def _flow(dot: Any, flow: FlowStep) -> None:
    for name, step in flow.steps.items():
        label = name if not getattr(step, "function", None) else f"{name}\n({step.function})"
        if isinstance(step, RouterStep):
            _router(dot, step)
        elif isinstance(step, QueueStep):
            dot.node(_node_id(name), label, shape="cds")
        else:
            dot.node(_node_id(name), label, shape="ellipse",
                     style="dashed" if isinstance(step, ErrorStep) else "solid")
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
