"""GraphServer: hosts one function's part of a graph, in the mock server and when deployed."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import traceback
from typing import Any

from ..errors import BadRequestError, GraphpackError, HTTPError, RequestFailed, StepError
from ..graph.steps import BaseStep, FlowStep, RouterStep, step_from_dict
from ..graph.validate import validate_graph
from . import json_codec
from .context import GraphContext
from .event import Event
from ..queues.base import QueueError, RecordTooLarge, StorageError
from . import durable, metrics, otel
from .deps import MissingDependency
from .flow import AsyncEngine, EventState, QueuePusher, SyncEngine, build_nodes, drive, run_chain
from .http_wire import normalise_path, query_fields
from .nodes import post_init
from .response import Response

JSON_TYPES = ("application/json", "text/json")
_LAST_SPEC: dict | None = None  # the spec of the server initialised last in this process


class GraphServer:
    """Runs events through a graph; ``test()`` is the mock server's entry point."""

    kind = "server"

    def __init__(self, graph: BaseStep | dict | None = None, parameters: dict | None = None,
                 load_mode: str | None = None, function_uri: str | None = None,
                 verbose: bool = False, current_function: str | None = None,
                 error_stream: str | None = None, secret_sources: list | None = None,
                 default_content_type: str | None = None, functions: dict | None = None,
                 graph_initializer: str | None = None, **kw: Any) -> None:
        if isinstance(graph, dict):
            graph = graph_from_dict(graph)
        self.graph: BaseStep | None = graph
        self.parameters = dict(parameters or {})
        self.load_mode = load_mode
        self.function_uri = function_uri or ""
        self.verbose = verbose
        self.current_function = current_function if current_function is not None else ""
        self.error_stream = error_stream
        self.secret_sources = list(secret_sources or [])
        self.default_content_type = default_content_type
        self.functions = dict(functions or {})
        self.graph_initializer = graph_initializer
        self.context: GraphContext | None = None
        self._engine: Any = None
        self._is_async = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._pending: set = set()
        self._nodes: list = []
        self._chain: tuple | None = None
        self._pushers = False  # does this function push to queues (acknowledge after their writes)?

    # -- (de)serialisation ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: dict | str) -> "GraphServer":
        """A server from a serving spec (dict or JSON string)."""
        if isinstance(spec, str):
            spec = json.loads(spec)
        assert isinstance(spec, dict)
        fields = ("graph", "parameters", "load_mode", "function_uri", "verbose", "current_function",
                  "error_stream", "secret_sources", "default_content_type", "functions",
                  "graph_initializer")
        kwargs: dict[str, Any] = {k: spec[k] for k in fields if k in spec}
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return {
            "function_uri": self.function_uri,
            "version": "v2",
            "parameters": self.parameters,
            "graph": self.graph.to_dict() if self.graph is not None else None,
            "load_mode": self.load_mode,
            "functions": self.functions,
            "graph_initializer": self.graph_initializer,
            "error_stream": self.error_stream,
            "secret_sources": self.secret_sources,
            "default_content_type": self.default_content_type,
            "verbose": self.verbose,
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def set_current_function(self, name: str | None) -> None:
        self.current_function = name or ""

    def set_error_stream(self, path: str | None) -> None:
        """Send failed events to the queue at ``path``."""
        self.error_stream = path
        if self.context is not None:
            self.context._error_pusher = _error_pusher(path)

    # -- initialisation ---------------------------------------------------------------------
    def init_states(self, context: Any = None, namespace: Any = None, logger: Any = None,
                    is_mock: bool = False, **kw: Any) -> GraphContext:
        """Create the GraphContext the steps receive."""
        self.context = GraphContext(server=self, nuclio_context=context, logger=logger)
        self.context.is_mock = is_mock
        self.context.root = self.graph
        if self.verbose and hasattr(self.context.logger, "set_level"):
            self.context.logger.set_level("debug")
        if context is not None and getattr(context, "trigger", None) is not None:
            self.context.trigger = getattr(context.trigger, "kind", "") or ""
        self.context._error_pusher = _error_pusher(self.error_stream)
        global _LAST_SPEC
        _LAST_SPEC = self.to_dict()
        return self.context

    def init_object(self, namespace: Any = None) -> "GraphServer":
        """Validate the graph, create every step object and choose the engine."""
        if self.graph is None:
            raise GraphpackError("the function has no graph: call set_topology() or add_model() first")
        if self.context is None:
            self.init_states()
        validate_graph(self.graph)
        namespaces = _as_namespaces(namespace)
        if self.graph_initializer:
            from .resolve import resolve_handler

            resolve_handler(self.graph_initializer, namespaces, "graph_initializer")(self)
        nodes, starts, error_node = build_nodes(self.graph, namespaces, self.context, self.current_function)
        metrics.instrument(nodes)  # graphpack serve's metrics (a no-op when they are off)
        if otel.wanted() and otel.setup(self._service_name(), getattr(self.context, "logger", None)) is not None:
            otel.instrument(nodes)  # spans per step, exported over OTLP
        self._nodes = nodes
        self._pushers = any(isinstance(node.obj, QueuePusher) for node in nodes)
        engine = getattr(self.graph, "engine", None) if isinstance(self.graph, FlowStep) else "sync"
        self._is_async = engine in (None, "async")
        if self._is_async:
            self._engine = AsyncEngine(nodes, starts, error_node, self.context)
        else:
            self._engine = SyncEngine(nodes, starts, error_node, self.context, loop_runner=self._run_in_loop)
        post_init(nodes, self.load_mode or "sync")
        self._chain = self._engine.chain
        return self

    def _service_name(self) -> str:
        """The function's name for its spans: graphpack serve's name for it, else project-function."""
        if metrics.recorder is not None:
            return metrics.recorder.function
        return self.running_function_uri.replace("/", "-") or "graphpack"

    @property
    def running_function_uri(self) -> str:
        """The function this server runs: the root's uri, or ``<root uri>-<child>`` in a child
        function (as the root's ``functions`` map names its children)."""
        if self.current_function in ("", "*"):
            return self.function_uri
        return f"{self.function_uri}-{self.current_function}"

    @property
    def engine(self) -> str:
        return "async" if self._is_async else "sync"

    @property
    def sync_with_async_steps(self) -> bool:
        """A sync graph with ``async def`` steps (it needs an event loop of its own)."""
        return not self._is_async and self._engine is not None and self._engine.has_async

    # -- running ----------------------------------------------------------------------------
    def run(self, event: Event, context: Any = None, get_body: bool = False) -> Any:
        """Process one event; returns a Response (or the body with ``get_body``) once every
        queue record the event produced is durable (a failed write answers 503)."""
        if self._pushers:
            response, writes = self.run_deferred(event)
            if writes is not None:
                response = self.settle(response, writes.wait())
        else:
            response = self._respond(event)
        if get_body:
            return response.body
        return response

    def run_deferred(self, event: Event) -> tuple[Response, durable.Writes | None]:
        """Process one event without waiting for its queue writes: (response, the writes to wait
        for before sending it, or None). Send ``settle(response, failure)`` once they ended
        (``writes.when_done`` / ``writes.wait`` give the failure)."""
        if not self._pushers:
            return self._respond(event), None
        with durable.collecting() as writes:
            response = self._respond(event)
        return response, writes if writes.tickets else None

    def settle(self, response: Response, failure: durable.Failure | None) -> Response:
        """What to send once the event's writes ended: ``response``, or the failed write's error."""
        if failure is None or response.status_code >= 500:
            return response
        step, error = failure
        return self.error_response(StepError(step, error))

    def _respond(self, event: Event) -> Response:
        try:
            return self._to_response(event, self._execute(event))
        except Exception as exc:  # noqa: BLE001 - turned into a status code
            return self.error_response(exc)

    def _execute(self, event: Event) -> Event | None:
        """Run the graph on a decoded event; raises on failure."""
        engine = self._engine
        if engine is None:
            raise GraphpackError("call init_object() before running events")
        if event.body.__class__ in (str, bytes, bytearray):
            self._decode(event)
        try:
            if self._chain is not None:  # a plain chain (flow.plain_chain): the engines' loop, inlined
                return run_chain(engine, event)
            if self._is_async:
                return self._run_async_blocking(event)
            return engine.run(event)
        except (StepError, HTTPError) as exc:
            if not self._answered_at_once(event):
                raise
            self._log_failure(exc)
            return None

    def _answered_at_once(self, event: Event) -> bool:
        """An async graph without a responder answers ``{"id"}`` over HTTP whatever happens next
        (DESIGN §4.2); a stream record waits for its processing (and fails with it)."""
        return self._is_async and not self._engine.has_responder and not _from_stream(event)

    def _log_failure(self, exc: BaseException) -> None:
        if self.context is not None:
            step = exc.step if isinstance(exc, StepError) else "?"
            error = exc.error if isinstance(exc, StepError) else exc
            self.context.logger.error(f"step {step} failed: {type(error).__name__}: {error}")

    async def run_async(self, event: Event) -> Response:
        """Process one event inside a running event loop; answers once its queue writes are durable."""
        if not self._pushers:
            return await self._respond_async(event)
        with durable.collecting() as writes:
            response = await self._respond_async(event)
        if not writes.tickets:
            return response
        loop = asyncio.get_running_loop()
        ended: asyncio.Future = loop.create_future()
        writes.when_done(lambda failure: loop.call_soon_threadsafe(_resolve, ended, failure))
        return self.settle(response, await ended)

    async def _respond_async(self, event: Event) -> Response:
        try:
            if event.body.__class__ in (str, bytes, bytearray):
                self._decode(event)
            engine = self._engine
            result: Event | None
            if self._chain is not None:
                result = run_chain(engine, event)
            elif not self._is_async:
                result = engine.run(event)
            elif not engine.has_async:
                result = drive(engine.run(event))
            else:
                result = await self._run_on_loop(event)
            return self._to_response(event, result)
        except Exception as exc:  # noqa: BLE001 - turned into a status code
            if isinstance(exc, (StepError, HTTPError)) and self._answered_at_once(event):
                self._log_failure(exc)
                return self._to_response(event, None)
            return self.error_response(exc)

    async def _run_on_loop(self, event: Event) -> Event | None:
        """Start the event on the running loop; wait for the responder's output, if any."""
        state = EventState()
        task = asyncio.ensure_future(self._engine.run(event, state))
        if self._pushers:  # acknowledged once stored: the whole event runs first, queue pushes included
            return await task
        if not self._engine.has_responder:
            if _from_stream(event):
                await task  # a stream record is acknowledged only once it has been processed
                return None
            self._track(task)  # answered with {"id"} at once; processing goes on
            return None
        return await self._wait_response(task, state)

    async def _wait_response(self, task: asyncio.Future, state: Any) -> Any:
        state.future = asyncio.get_running_loop().create_future()
        done, _ = await asyncio.wait({task, state.future}, return_when=asyncio.FIRST_COMPLETED)
        if state.future in done:
            if not task.done():
                self._track(task)
            return state.future.result()
        return task.result()

    def _track(self, task: asyncio.Future) -> None:
        self._pending.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log_failure(task.exception())  # type: ignore[arg-type]

    def _run_async_blocking(self, event: Event) -> Event | None:
        if not self._engine.has_async:
            return drive(self._engine.run(event))
        return asyncio.run_coroutine_threadsafe(self._run_on_loop(event), self._ensure_loop()).result()

    def _run_in_loop(self, coro: Any) -> Any:
        """Run a coroutine for the sync engine (an async step in a sync graph)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro) if self._loop is None else \
                asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        coro.close()
        raise GraphpackError("an async step cannot run in a sync graph inside an event loop; use engine='async'")

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="graphpack-async", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    def wait_for_completion(self, timeout: float | None = None) -> None:
        """Wait for events still being processed (async graphs without a responder), then
        flush the queues the graph pushes to."""
        loop = self._loop
        if loop is None:
            self.close()
            return

        async def _drain() -> None:
            while self._pending:
                await asyncio.wait(set(self._pending), timeout=timeout)
                if timeout is not None:
                    break

        asyncio.run_coroutine_threadsafe(_drain(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
        loop.close()
        self._loop = self._loop_thread = None
        self.close()

    def close(self) -> None:
        """Flush and close the queues the graph pushes to: producers buffer records briefly
        after an event was answered, and what was acknowledged must be written before exit."""
        from .flow import QueuePusher

        for node in self._nodes:
            if isinstance(node.obj, QueuePusher):
                try:
                    node.obj.close()
                except Exception as exc:  # noqa: BLE001 - log it and close the others
                    if self.context is not None:
                        self.context.logger.error(f"closing queue {node.obj.step.path} failed: "
                                                  f"{type(exc).__name__}: {exc}")
            elif type(node.obj).__module__ == "graphpack.serving.remote":
                node.obj.close()  # the remote step's HTTP client (its pooled connections)

    # -- request / response mapping ---------------------------------------------------------
    def _decode(self, event: Event) -> None:
        body = event.body
        if not isinstance(body, (str, bytes, bytearray)):
            return
        content_type = (event.content_type or self.default_content_type or "").split(";")[0].strip().lower()
        if content_type and content_type not in JSON_TYPES:
            return
        if not body:
            event.body = None
            return
        try:
            event.body = json_codec.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            if content_type in JSON_TYPES:
                raise BadRequestError(f"request body is not valid JSON: {exc}") from None

    def _result_body(self, event: Event, result: Event | None) -> Any:
        if self._is_async and not self._engine.has_responder:
            return {"id": event.id}
        return result.body if result is not None else None

    def _to_response(self, event: Event, result: Event | None) -> Response:
        body = self._result_body(event, result)
        if body.__class__ is dict or body.__class__ is list:  # the common case
            return Response(body=body, content_type="application/json")
        if isinstance(body, Response):
            return body
        if _looks_like_response(body):  # e.g. nuclio_sdk.Response from context.Response
            return Response(getattr(body, "headers", None), body.body,
                            getattr(body, "content_type", None), body.status_code)
        return Response(body=body, content_type=_content_type(body))

    def error_response(self, exc: BaseException) -> Response:
        """The response for an exception: HTTPError keeps its status, others are 500."""
        step = ""
        error = exc
        if isinstance(exc, StepError):
            step, error = exc.step, exc.error
        headers = None
        if isinstance(error, HTTPError):
            status, message = error.status_code, error.message or str(error)
        elif isinstance(error, StorageError):  # the store failed, not the client: send it again later
            status, message, headers = 503, str(error), {"Retry-After": RETRY_AFTER}
        elif isinstance(error, RecordTooLarge):
            status, message = 413, str(error)
        elif isinstance(error, (QueueError, MissingDependency)):  # the function's setup, not the request
            status, message = 500, str(error)
        elif isinstance(error, GraphpackError):
            status, message = 400, str(error)
        else:
            status, message = 500, f"{type(error).__name__}: {error}"
        body: dict = {"error": message}
        if step:
            body["step"] = step
        if self.verbose:
            body["traceback"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        if self.context is not None and status >= 500:
            self.context.logger.error(f"step {step or '?'} failed: {message}")
        return Response(headers, body=body, content_type="application/json", status_code=status)

    # -- mock server ------------------------------------------------------------------------
    def test(self, path: str = "/", body: Any = None, method: str = "", headers: dict | None = None,
             content_type: str | None = None, silent: bool = False, get_body: bool = True,
             event_id: str | None = None, trigger: Any = None, offset: int | None = None,
             time: Any = None) -> Any:
        """Send one request through the graph, as an HTTP call to the function would."""
        if headers:
            headers = dict(headers)
            for key, value in headers.items():
                lower = key.lower()
                if lower in ("mlrun-event-id", "graphpack-event-id"):
                    event_id = value
                elif lower in ("mlrun-event-path", "graphpack-event-path"):
                    path = value
        path, _, query = (path or "/").partition("?")  # as the http trigger: the query goes to fields
        if path.startswith("/"):
            path = normalise_path(path)  # percent-decoded and normalised, as the http trigger does
        # as MLRun's mock: POST when there is a (truthy) body, else GET
        event = Event(body, event_id, path or "/", method or ("POST" if body else "GET"), headers)
        if query:
            event.fields = query_fields(query)
        if content_type is not None:
            event.content_type = content_type
        if trigger is not None:
            event.trigger = trigger
        if offset is not None:
            event.offset = offset
        if time is not None:
            event.time = time
        writes = None
        try:
            if self._pushers:
                with durable.collecting() as writes:
                    result = self._execute(event)
            else:
                result = self._execute(event)
        except Exception as exc:  # noqa: BLE001 - turned into a status code
            response = self.error_response(exc)
        else:
            failure = writes.wait() if writes is not None and writes.tickets else None
            if failure is not None:
                response = self.settle(self._to_response(event, result), failure)
            else:
                body = self._result_body(event, result)
                if get_body and (body.__class__ in _PLAIN or not _looks_like_response(body)):
                    return body  # the common case: no Response object needed
                response = self._to_response(event, result)
        if response.status_code >= 300 and not silent:
            raise RequestFailed(response.status_code, response.body)
        return response  # a step's Response (or a failure) reaches the caller as a Response


_PLAIN = (dict, list, str, int, float, bool, type(None), bytes)
RETRY_AFTER = "1"  # seconds, on a 503 for a write the store refused


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def create_graph_server(parameters: dict | None = None, load_mode: str | None = None,
                        graph: BaseStep | dict | None = None, verbose: bool = False,
                        current_function: str | None = None, **kwargs: Any) -> GraphServer:
    """A graph server without a function object (MLRun's ``create_graph_server``); call
    ``init_states(context, namespace)`` and ``init_object(namespace)`` before ``test()``.
    ``current_function`` defaults to ``$SERVING_CURRENT_FUNCTION``."""
    server = GraphServer(graph, parameters or {}, load_mode, verbose=verbose, **kwargs)
    server.set_current_function(current_function or os.environ.get("SERVING_CURRENT_FUNCTION", ""))
    return server


def _from_stream(event: Event) -> bool:
    """Did the event come from a trigger other than http (a stream, a queue, cron)?"""
    trigger = event.trigger
    kind = getattr(trigger, "kind", trigger) or ""
    return kind not in ("", "http")


def _looks_like_response(body: Any) -> bool:
    return type(body).__name__ == "Response" and hasattr(body, "status_code")


def _content_type(body: Any) -> str:
    if isinstance(body, (dict, list)):
        return "application/json"
    if isinstance(body, (bytes, bytearray)):
        return "application/octet-stream"
    return "text/plain"


def _error_pusher(path: str | None) -> Any:
    """push(step, error, body, event_id, **extra) to the error stream at ``path`` (flushed each time)."""
    if not path:
        return None

    def push(step: str, error: str, body: Any, event_id: Any, **extra: Any) -> None:
        from ..queues.errorstream import push_error

        push_error(path, step, error, body, event_id, **extra)

    return push


def _as_namespaces(namespace: Any) -> list:
    if namespace is None:
        return []
    if isinstance(namespace, (list, tuple)):
        return [n for n in namespace if n is not None]
    return [namespace]


def graph_from_dict(data: dict) -> BaseStep:
    """The root step of a serialised graph (no kind, or "root"/"flow" = flow; "router")."""
    kind = data.get("kind")
    if kind == "router":
        return step_from_dict(data.get("name") or "router", data)
    if kind in (None, "root", "flow"):
        return step_from_dict(None, {**data, "kind": "root"})
    raise GraphpackError(f"graph: unknown root kind {kind!r}")


def get_serving_spec() -> dict:
    """The serving spec of this function: the spec file, ``$GRAPHPACK_SPEC``, or (in the
    mock server) the spec of the server running in this process."""
    path = os.environ.get("GRAPHPACK_SPEC_FILE", "/opt/graphpack/spec.json")
    if os.path.isfile(path):
        with open(path) as handle:
            return json.load(handle)
    data = os.environ.get("GRAPHPACK_SPEC") or os.environ.get("SERVING_SPEC_ENV")
    if data:
        return json.loads(data)
    if _LAST_SPEC is not None:  # in-process (mock server): the running server's spec
        return _LAST_SPEC
    raise GraphpackError(f"no serving spec found: neither {path} nor $GRAPHPACK_SPEC is set")


__all__ = ["GraphServer", "RouterStep", "create_graph_server", "get_serving_spec", "graph_from_dict"]
