"""Build the node graph a function runs, and the two engines that walk it.

Both engines walk the same nodes depth-first, branches in declaration order, so they give
the same results (DESIGN §4.1). They walk with an explicit stack, not recursion, so a graph
of any depth runs. ``sync`` runs in the caller's thread. ``async`` is a
coroutine; when no step is async it is driven to completion without an event loop
(nothing could suspend), otherwise it runs on a loop and branches run concurrently.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..errors import GraphpackError, HTTPError, StepError
from ..graph.steps import BaseStep, ErrorStep, FlowStep, QueueStep, RouterStep, TaskStep
from ..queues import record as wire
from ..queues.commit import failed
from . import durable
from .event import Event
from .nodes import Node, compile_router, compile_task


def is_local(step: BaseStep, current: str) -> bool:
    """Does ``step`` run in function ``current`` ("" = root, "*" = all)?"""
    if current == "*":
        return True
    function = getattr(step, "function", None)
    if not function:
        return current == ""
    return function == "*" or function == current


class QueuePusher:
    """The root side of a queue whose consumers run in another function.

    A push goes to the queue's group commit; its ticket joins the event's writes (see
    :mod:`graphpack.runtime.durable`) so that the event is acknowledged once the record is
    durable. Without a collector (a step called on its own) the push waits itself."""

    def __init__(self, step: QueueStep) -> None:
        self.step = step
        self._queue: Any = None
        self.stats: Any = None  # metrics.QueueStats when graphpack serve records metrics

    def push(self, record: Any) -> None:
        writes = durable.current()
        try:
            if self._queue is None:
                from ..queues import open_queue

                options = {k: v for k, v in self.step.options.items() if k not in ("full_event", "group")}
                if self.step.shards:
                    options["shards"] = self.step.shards
                if self.step.retention_in_hours:
                    options["retention_in_hours"] = self.step.retention_in_hours
                self._queue = open_queue(str(self.step.path), **options)
            ticket = self._queue.submit([record])
        except Exception as exc:
            if writes is not None:  # not stored: the event must not be acknowledged
                writes.add(self.step.fullname, failed(exc))
            raise
        if self.stats is not None:
            ticket.add_done_callback(self.stats.stored)
        if writes is None:
            ticket.wait()
        else:
            writes.add(self.step.fullname, ticket)

    def close(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            queue.close()


def _queue_node(step: QueueStep, has_local_children: bool, has_children: bool, current: str) -> Node:
    full_event = step.full_event if step.full_event is not None else has_children
    name = step.name or ""

    if not step.path or has_local_children:
        # an in-process hop (path="", or the mock) goes exactly as on the wire (DESIGN §4.7)
        def round_trip(event: Event) -> Event:
            data = wire.encode(wire.wrap(event, full_event), queue=name)
            return wire.unwrap(wire.decode(data), Event)
        return Node(step, round_trip)
    pusher = QueuePusher(step)

    def push(event: Event) -> None:
        pusher.push(wire.wrap(event, full_event))  # the queue encodes it, and shards by the event key
        return None
    node = Node(step, push)
    node.obj = pusher
    return node


def build_nodes(graph: BaseStep, namespaces: list, context: Any, current: str) -> tuple[list[Node], list[Node], Node | None]:
    """Compile the part of ``graph`` that runs in function ``current``.

    Returns (all nodes, start nodes, graph-level error node).
    """
    if isinstance(graph, RouterStep):
        node = compile_router(graph, namespaces, context)
        return [node], [node], None
    if not isinstance(graph, FlowStep):
        raise GraphpackError(f"unsupported graph root {type(graph).__name__}")
    steps = graph.steps
    local = {name: step for name, step in steps.items() if is_local(step, current)}
    downstream: dict[str, list[str]] = {name: [] for name in steps}
    for name, step in steps.items():
        for parent in step.after:
            if parent in downstream:
                downstream[parent].append(name)
    nodes: dict[str, Node] = {}
    for name, step in local.items():
        if isinstance(step, QueueStep):
            kids = downstream[name]
            nodes[name] = _queue_node(step, any(k in local for k in kids), bool(kids), current)
        elif isinstance(step, RouterStep):
            nodes[name] = compile_router(step, namespaces, context)
        elif isinstance(step, TaskStep):
            nodes[name] = compile_task(step, namespaces, context)
        else:
            raise GraphpackError(f"step {name!r}: nested flows are not supported")
    for name, node in nodes.items():
        node.children = [nodes[k] for k in downstream[name] if k in nodes]
        step = steps[name]
        if isinstance(step, ErrorStep):
            node.children = [nodes[t] for t in step.before if t in nodes] + node.children
        if step.on_error and step.on_error in nodes:
            node.on_error = nodes[step.on_error]
    error_targets = {s.on_error for s in steps.values() if s.on_error} | {graph.on_error}
    starts = []
    for name, node in nodes.items():
        step = steps[name]
        if isinstance(step, ErrorStep) or name in error_targets:
            continue
        if not any(parent in nodes for parent in step.after):
            if current in ("", "*") and step.after:
                continue  # after a non-local step: only reachable through a queue
            starts.append(node)
    if not starts and nodes:
        raise GraphpackError(f"no steps run in function {current or 'root'!r} (check the steps' function=)")
    return list(nodes.values()), starts, nodes.get(graph.on_error) if graph.on_error else None


class EventState:
    """What one event has produced so far."""

    __slots__ = ("response", "responded", "last", "future")

    def __init__(self) -> None:
        self.response: Event | None = None
        self.responded = False
        self.last: Event | None = None
        self.future: asyncio.Future | None = None

    def respond(self, event: Event | None) -> None:
        if not self.responded:
            self.responded = True
            self.response = event
            if self.future is not None and not self.future.done():
                self.future.set_result(event)


class Engine:
    """Shared walking rules; subclasses decide how a step is called."""

    def __init__(self, nodes: list[Node], starts: list[Node], error_node: Node | None, context: Any) -> None:
        self.nodes = nodes
        self.starts = starts
        self.error_node = error_node
        self.context = context
        self.has_responder = any(n.responder for n in nodes)
        self.has_async = any(n.is_async for n in nodes)
        self.chain = plain_chain(nodes, starts, error_node)

    def _error_event(self, node: Node, event: Event, exc: BaseException) -> tuple[Node, Event]:
        """Decide where a step failure goes; raise when nothing handles it."""
        origin, error = node.fullname, exc
        if isinstance(exc, StepError):
            origin, error = exc.step, exc.error
        handler = node.on_error or self.error_node
        message = f"{type(error).__name__}: {error}" if not isinstance(error, HTTPError) else error.message
        if self.context is not None and (getattr(error, "status_code", None) or 500) >= 500:
            self.context.push_error(event, message, source=origin)
        if handler is None or isinstance(error, HTTPError) or node is handler:
            raise StepError(origin, error) from exc
        event.error = str(error)
        event.origin_state = origin
        return handler, event

    def _after_error(self, handler: Node, event: Event, out: Any, state: EventState) -> tuple[list[Node], Any]:
        """Where an error handler's output goes: it answers unless the flow resumes (``before=``)."""
        if out is None:
            return [], None
        if not isinstance(out, Event):
            event.body = out
            out = event
        if self.has_responder and not getattr(handler.step, "before", None):
            state.respond(out)
        state.last = out
        return handler.children, out

    @staticmethod
    def _route(node: Node, out: Event, state: EventState) -> tuple[list[Node], Event]:
        """The responder, terminated and leaf rules for one output; returns where it goes next."""
        if node.responder:
            state.respond(out)
            if node.children:
                out = out.copy()  # later steps must not change the response
        if out.terminated:
            state.respond(out)
            return [], out
        if not node.children:
            state.last = out
        return node.children, out


def plain_chain(nodes: list[Node], starts: list[Node], error_node: Node | None) -> tuple | None:
    """(chain function, nodes) when the graph is one chain of body -> body calls with no error
    handlers and the responder (if any) last: then the engines run it as one plain call."""
    if len(starts) != 1 or error_node is not None:
        return None
    chain, node = [], starts[0]
    while True:
        if node.body_fn is None or node.on_error is not None or node.kind != "task":
            return None
        chain.append(node)
        if len(node.children) > 1 or (node.responder and node.children):
            return None
        if not node.children:
            break
        node = node.children[0]
    if len(chain) != len(nodes):
        return None
    return _compile_chain([n.body_fn for n in chain]), tuple(chain)


def _compile_chain(functions: list) -> Any:
    """``def chain(body): body = f0(body); body = f1(body); ...; return body`` — one frame for
    the whole chain; a failure's line number tells which step raised."""
    lines = ["def chain(body):"] + [f"    body = f{i}(body)" for i in range(len(functions))] + ["    return body"]
    namespace = {f"f{i}": fn for i, fn in enumerate(functions)}
    exec(compile("\n".join(lines), "<graphpack chain>", "exec"), namespace)  # noqa: S102 - our own template
    return namespace["chain"]


def run_chain(engine: "Engine", event: Event) -> Event:
    """Run a plain chain (see plain_chain); a failure names its step."""
    chain, nodes = engine.chain  # type: ignore[misc]
    try:
        event.body = chain(event.body)
    except Exception as exc:  # noqa: BLE001 - no error handler in a plain chain
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code is not chain.__code__:
            tb = tb.tb_next
        index = tb.tb_lineno - 2 if tb is not None else 0
        engine._error_event(nodes[index], event, exc)  # pushes to the error stream, raises StepError
    return event


def _push(stack: list, children: list[Node], event: Event | None) -> None:
    """Queue ``event`` for ``children`` so the first child's whole branch runs first; every
    branch gets its own copy, made before any branch runs."""
    if not children or event is None:
        return
    if len(children) == 1:
        stack.append((children[0], event, False))
        return
    events = [event] + [event.copy() for _ in children[1:]]
    for i in range(len(children) - 1, -1, -1):
        stack.append((children[i], events[i], False))


class SyncEngine(Engine):
    """Runs the graph in the caller's thread."""

    def __init__(self, *args: Any, loop_runner: Any = None) -> None:
        super().__init__(*args)
        self._run_coroutine = loop_runner

    def run(self, event: Event) -> Event | None:
        if self.chain is not None:
            return run_chain(self, event)
        state = EventState()
        try:
            self._walk(self.starts, event, state)
        except (StepError, HTTPError):
            if not state.responded:
                raise
            self.context.logger.error(f"a step after the responder failed (event {event.id})")
        return state.response if state.responded else state.last

    def _call(self, node: Node, event: Event) -> Any:
        out = node.call(event)
        if node.is_async:
            out = self._run_coroutine(out)
        return out

    def _walk(self, starts: list[Node], event: Event, state: EventState) -> None:
        """Depth-first with an explicit stack of (node, event, is_output): any depth, no recursion.
        ``is_output`` marks one item of a step's list output (FlatMap), routed in its turn; a
        chain of single children goes on without touching the stack."""
        stack: list = []
        node, is_output = starts[0], False
        if len(starts) > 1:
            _push(stack, starts, event)
            node, event, is_output = stack.pop()
        while True:
            if is_output:
                children, out = self._route(node, event, state)
                is_output = False
            else:
                try:
                    out = self._call(node, event)
                except Exception as exc:  # noqa: BLE001 - routed to error handlers
                    handler, event = self._error_event(node, event, exc)
                    try:
                        handled = self._call(handler, event)
                    except Exception as exc2:  # noqa: BLE001
                        raise StepError(handler.fullname, exc2) from exc2
                    children, out = self._after_error(handler, event, handled, state)
                else:
                    if out is None:
                        children = []
                    elif out.__class__ is list:
                        stack.extend((node, item, True) for item in reversed(out))
                        children = []
                    else:
                        children, out = self._route(node, out, state)
            if len(children) == 1:
                node, event = children[0], out
                continue
            if children:
                _push(stack, children, out)
            if not stack:
                return
            node, event, is_output = stack.pop()


class AsyncEngine(Engine):
    """Runs the graph as a coroutine; branches run concurrently when steps are async."""

    async def run(self, event: Event, state: EventState | None = None) -> Event | None:
        if self.chain is not None:
            result = run_chain(self, event)
            if state is not None:
                state.respond(result)
            return result
        state = state or EventState()
        try:
            await self._walk(self.starts, event, state)
        except (StepError, HTTPError):
            if not state.responded:
                raise
            self.context.logger.error(f"a step after the responder failed (event {event.id})")
        return state.response if state.responded else state.last

    async def _call(self, node: Node, event: Event) -> Any:
        out = node.call(event)
        return await out if node.is_async else out

    async def _walk(self, starts: list[Node], event: Event, state: EventState) -> None:
        """The sync engine's walk, awaiting each step. With async steps, the branches of a
        fan-out run concurrently, each as its own task walking its own stack (no recursion)."""
        stack: list = []
        node, is_output = starts[0], False
        if len(starts) > 1:
            await self._branches(stack, starts, event, state)
            if not stack:
                return
            node, event, is_output = stack.pop()
        while True:
            if is_output:
                children, out = self._route(node, event, state)
                is_output = False
            else:
                try:
                    out = await self._call(node, event)
                except Exception as exc:  # noqa: BLE001 - routed to error handlers
                    handler, event = self._error_event(node, event, exc)
                    try:
                        handled = await self._call(handler, event)
                    except Exception as exc2:  # noqa: BLE001
                        raise StepError(handler.fullname, exc2) from exc2
                    children, out = self._after_error(handler, event, handled, state)
                else:
                    if out is None:
                        children = []
                    elif out.__class__ is list:
                        stack.extend((node, item, True) for item in reversed(out))
                        children = []
                    else:
                        children, out = self._route(node, out, state)
            if len(children) == 1:
                node, event = children[0], out
                continue
            if children:
                await self._branches(stack, children, out, state)
            if not stack:
                return
            node, event, is_output = stack.pop()

    async def _branches(self, stack: list, children: list[Node], event: Event | None, state: EventState) -> None:
        """A fan-out: with async steps the branches run now as concurrent tasks, else they are
        queued on ``stack`` to run one after the other."""
        if not self.has_async or event is None:
            _push(stack, children, event)
            return
        events = [event] + [event.copy() for _ in children[1:]]
        await asyncio.gather(*(self._walk([c], e, state) for c, e in zip(children, events)))


def drive(coro: Any) -> Any:
    """Run a coroutine that cannot suspend (no async steps) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("an async step suspended outside an event loop")
