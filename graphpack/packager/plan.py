"""Function plans: what to build for a root function and each of its children.

A serving function with ``function=`` steps is split into one plan per function. Each plan
carries the whole graph in its serving spec, with ``current_function`` telling the runtime
which part it runs (the root: ""), so each child's part is self-contained and the root knows
how to push to every queue. Children inherit parameters, error_stream and secret_sources.
A child reads its input queue through a Nuclio ``v3ioStream`` trigger (``v3io://``), a
``kafka-cluster`` trigger (``kafka://``, consumed by ``graphpack serve`` itself on the local and
docker targets) or graphpack's own consumer (``s3://`` and file queues); a queue without a path can only join
functions on the ``local`` target, which provides a default queue.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..errors import GraphpackError
from ..graph.steps import FlowStep, QueueStep
from ..graph.validate import validate_graph
from .checks import check_build_values
from .names import check_names
from .usercode import CodeFile, child_code, function_code

TARGETS = ("local", "docker", "nuclio", "knative")
DEFAULT_IMAGE = "python:3.11-slim"
CONSUMER_SCHEMES = ("s3", "file")


@dataclass(frozen=True)
class QueueInput:
    """The queue a child reads: ``url`` None means the target's default queue (local only)."""

    step: str
    url: str | None
    scheme: str
    group: str
    shards: int | None = None
    options: dict = field(default_factory=dict)
    trigger_args: dict = field(default_factory=dict)  # extra attributes of the child's Nuclio trigger


@dataclass(frozen=True)
class FunctionPlan:
    """Everything the packager needs to write one function's build context."""

    function: str            # directory name: the root's name or the child's
    root: str                # the root function's name
    project: str
    current_function: str    # "" for the root, else the child's name
    spec: dict               # the serving spec (spec.json)
    code: tuple[CodeFile, ...]
    image: str
    requirements: tuple[str, ...]
    build_commands: tuple[str, ...]
    env: dict
    secret_sources: tuple
    triggers: dict
    resources: dict
    min_replicas: int | None
    max_replicas: int | None
    labels: dict
    input_queue: QueueInput | None = None

    @property
    def is_root(self) -> bool:
        return not self.current_function

    @property
    def where(self) -> str:
        """How error messages name this function."""
        if self.is_root:
            return f"function {self.root!r}"
        return f"function {self.root!r}: child {self.current_function!r}"


def _queue_inputs(graph: Any, child_names: list[str]) -> dict[str, QueueStep]:
    """child name -> the queue step whose downstream steps run in that child."""
    if not isinstance(graph, FlowStep):
        return {}
    steps = graph.steps
    found: dict[str, QueueStep] = {}
    for step in steps.values():
        for parent in step.after:
            queue = steps.get(parent)
            if isinstance(queue, QueueStep) and step.function and step.function in child_names \
                    and step.function != getattr(queue, "function", None):
                found.setdefault(step.function, queue)
    return found


def _runs_steps(graph: Any, child: str) -> bool:
    steps = list(graph.steps.values()) if isinstance(graph, FlowStep) else []
    for step in list(steps) + ([graph] if graph is not None else []):
        steps += list((getattr(step, "routes", None) or {}).values())
    return any(getattr(s, "function", None) == child for s in steps)


def _queue_input(where: str, queue: QueueStep, group: str, target: str) -> QueueInput:
    name = queue.name or ""
    path = queue.path or ""
    if not path:
        if target != "local":
            raise GraphpackError(
                f"{where}: queue {queue.name!r}: field 'path' is empty; a queue that joins two functions needs "
                f"a path (s3://, v3io:// or a file path) for target {target!r} (only 'local' provides a default queue)")
        return QueueInput(name, None, "default", group, queue.shards)
    options = {k: v for k, v in (queue.options or {}).items() if k not in ("full_event",)}
    scheme = path.split("://", 1)[0].lower() if "://" in path else ("kafka" if options.get("kafka_brokers") else "file")
    scheme = "v3io" if scheme == "v3ios" else scheme  # https to the same web API
    if scheme == "memory" and target != "local":
        raise GraphpackError(f"{where}: queue {queue.name!r}: field 'path' {path!r} is an in-process memory:// "
                             "queue; functions deployed apart need s3://, v3io:// or a shared file path")
    if scheme not in ("v3io", "kafka", "memory") + CONSUMER_SCHEMES:
        raise GraphpackError(f"{where}: queue {queue.name!r}: field 'path' {path!r} has unsupported scheme "
                             f"{scheme!r} (use kafka://, v3io://, s3:// or a file path)")
    if scheme == "kafka":
        _check_kafka(where, queue.name, path, options)
    group = str(options.pop("group", group))
    return QueueInput(name, path, scheme, group, queue.shards, options, dict(queue.trigger_args or {}))


def _check_kafka(where: str, name: str | None, path: str, options: dict) -> None:
    """A Kafka queue names its brokers and topic, and no credential sits in the options (they are
    written into spec.json: give librdkafka's ``sasl.password`` through the environment instead)."""
    from ..queues import QueueError
    from ..queues.kafka import parse_url

    try:
        parse_url(path, options.get("kafka_brokers"))
    except QueueError as exc:
        raise GraphpackError(f"{where}: queue {name!r}: {exc}") from None
    for field in ("kafka_producer_options", "kafka_consumer_options"):
        for key, value in (options.get(field) or {}).items():
            if value and any(word in str(key).lower() for word in ("password", "secret", ".key.pem", "key.password")):
                raise GraphpackError(f"{where}: queue {name!r}: option {field}[{key!r}] holds a credential inline; "
                                     "it would be written into the function's spec; set it in the environment "
                                     "from a secret (GRAPHPACK_KAFKA_<OPTION>, e.g. GRAPHPACK_KAFKA_SASL_PASSWORD)")


def nuclio_name(project: str, *parts: str) -> str:
    """The Nuclio function name: ``<project>-<function>[-<child>]`` ("_" -> "-", lower case)."""
    return "-".join(p for p in (project, *parts) if p).replace("_", "-").lower()


def plan_function(fn: Any, project: str | None = None, target: str = "nuclio") -> list[FunctionPlan]:
    """The plans of a serving function: the root first, then its children in declaration order."""
    if target not in TARGETS:
        raise GraphpackError(f"unknown build target {target!r}, use one of {', '.join(TARGETS)}")
    name = fn.metadata.name
    if not name:
        raise GraphpackError("a function to build needs a name (field metadata.name)")
    project = project or fn.metadata.project or ""
    where = f"function {name!r}"
    if not project:
        raise GraphpackError(f"{where}: field metadata.project is not set (build the function from a project)")
    children = fn.spec.child_functions
    try:
        validate_graph(fn.spec.graph, list(children))
    except GraphpackError as exc:
        raise GraphpackError(f"{where}: {exc}") from None
    check_build_values(fn, where)
    for source in fn.spec.secret_sources:
        if source.get("kind") == "inline":
            raise GraphpackError(f"{where}: field spec.secret_sources: inline secrets hold values and are for the "
                                 "mock server only; use with_secrets('env', [...]) or ('file', path)")
    root_code = function_code(fn, where)
    inputs = _queue_inputs(fn.spec.graph, list(children))
    base_labels = dict(fn.metadata.labels)
    check_names(fn.spec.graph, "", root_code, where)
    plans = [_plan(fn, project, "", root_code, None, base_labels)]
    for child_name, child in children.items():
        child_where = f"{where}: child {child_name!r}"
        if not _runs_steps(fn.spec.graph, child_name):
            raise GraphpackError(f"{child_where}: no step of the graph runs in it (set function={child_name!r} "
                                 "on its steps or remove the child)")
        queue = inputs.get(child_name)
        group = nuclio_name(project, name, child_name)
        queue_input = _queue_input(child_where, queue, group, target) if queue is not None else None
        code = child_code(fn, child, child_where, root_code)
        check_names(fn.spec.graph, child_name, code, child_where)
        plans.append(_plan(fn, project, child_name, code, queue_input, base_labels, child))
    return plans


def _plan(fn: Any, project: str, child_name: str, code: list[CodeFile], queue: QueueInput | None,
          labels: dict, child: Any = None) -> FunctionPlan:
    spec = fn.spec
    image = (child.image if child is not None and child.image else None) or spec.image or DEFAULT_IMAGE
    requirements = list(child.requirements) if child is not None else list(spec.requirements)
    triggers = copy.deepcopy(spec.triggers) if child is None else {}
    return FunctionPlan(
        function=child_name or fn.metadata.name,
        root=fn.metadata.name,
        project=project,
        current_function=child_name,
        spec=fn.serving_spec(current_function=child_name),
        code=tuple(code),
        image=image,
        requirements=tuple(dict.fromkeys(str(r) for r in requirements)),
        build_commands=tuple(str(c) for c in spec.build_commands),
        env={str(k): str(v) for k, v in spec.env.items()},
        secret_sources=tuple(copy.deepcopy(spec.secret_sources)),
        triggers=triggers,
        resources=copy.deepcopy(spec.resources),
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        labels=labels,
        input_queue=queue,
    )
