"""Build-time checks of a graph: every error names the step and the field."""
from __future__ import annotations

from ..errors import GraphpackError
from .steps import BaseStep, ErrorStep, FlowStep, QueueStep, RouterStep, TaskStep


def validate_graph(graph: BaseStep | None, functions: list[str] | None = None) -> None:
    """Raise GraphpackError for the first problem found in ``graph``.

    ``functions`` are the child function names the graph may name in ``function=``
    (None skips that check).
    """
    if graph is None:
        raise GraphpackError("the function has no graph: call set_topology() or add_model() first")
    if isinstance(graph, FlowStep):
        _validate_flow(graph, functions)
    elif isinstance(graph, RouterStep):
        _validate_routes(graph, functions)


def _validate_flow(flow: FlowStep, functions: list[str] | None) -> None:
    steps = flow.steps
    if not steps:
        raise GraphpackError("graph: field 'steps' is empty: the flow has no steps (add them with graph.to(...))")
    responders = []
    for name, step in steps.items():
        for parent in step.after:
            if parent not in steps:
                raise GraphpackError(f"step {name!r}: field 'after' names unknown step {parent!r}")
        if step.on_error and step.on_error not in steps:
            raise GraphpackError(f"step {name!r}: field 'on_error' names unknown step {step.on_error!r}")
        if isinstance(step, ErrorStep):
            for target in step.before:
                if target not in steps:
                    raise GraphpackError(f"error step {name!r}: field 'before' names unknown step {target!r}")
        if isinstance(step, TaskStep) and not isinstance(step, ErrorStep) and step.responder:
            responders.append(name)
        if isinstance(step, TaskStep) and step.full_event and (step.input_path or step.result_path):
            raise GraphpackError(f"step {name!r}: input_path/result_path cannot be used with full_event=True")
        if functions is not None and step.function not in (None, "", "*") and step.function not in functions:
            raise GraphpackError(
                f"step {name!r}: field 'function': function {step.function!r} is used in steps and is not "
                f"defined, use .add_child_function({step.function!r}, ...) to define it")
        if isinstance(step, QueueStep) and step.path is None:
            raise GraphpackError(f"queue {name!r}: field 'path' is required (use '' for an in-process queue)")
        if isinstance(step, RouterStep):
            _validate_routes(step, functions)
    if flow.on_error and flow.on_error not in steps:
        raise GraphpackError(f"graph: field 'on_error' names unknown step {flow.on_error!r}")
    if len(responders) > 1:
        raise GraphpackError(f"more than one responder step in the graph ({', '.join(responders)}): "
                             "only one step may call respond()")
    for name, step in steps.items():
        for parent in step.after:
            queue = steps[parent]
            if isinstance(queue, QueueStep) and not step.function:
                raise GraphpackError(
                    f"step {name!r} must set function=, because it follows queue {parent!r}")
    _check_cycles(steps)
    _check_queue_feeds(steps)


def _validate_routes(router: RouterStep, functions: list[str] | None) -> None:
    for key, route in router.routes.items():
        if route.class_name is None and route.handler is None:
            raise GraphpackError(f"route {router.name}/{key}: needs class_name or handler")


def upstream(steps: dict[str, BaseStep]) -> dict[str, list[str]]:
    """Each step's upstream steps, with error steps' ``before`` links added."""
    parents = {name: list(step.after) for name, step in steps.items()}
    for name, step in steps.items():
        if isinstance(step, ErrorStep):
            for target in step.before:
                if name not in parents[target]:
                    parents[target].append(name)
    return parents


def _check_cycles(steps: dict[str, BaseStep]) -> None:
    parents = upstream(steps)
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = trail[trail.index(name):] + [name]
            raise GraphpackError(f"graph loop: {' -> '.join(reversed(loop))}")
        state[name] = 1
        for parent in parents.get(name, []):
            visit(parent, trail + [name])
        state[name] = 2

    for name in steps:
        visit(name, [])


def _check_queue_feeds(steps: dict[str, BaseStep]) -> None:
    fed_by: dict[str, str] = {}
    for name, step in steps.items():
        for parent in step.after:
            queue = steps[parent]
            if isinstance(queue, QueueStep) and queue.path and step.function:
                previous = fed_by.setdefault(step.function, parent)
                if previous != parent:
                    raise GraphpackError(
                        f"function {step.function!r} cannot read from two queues ({previous!r} and {parent!r})")
