"""What a generated entry module calls: ``init_context(context)`` once per worker and
``handler(context, event)`` per event (Nuclio's Python wrapper, or graphpack's own processor).

``init_context`` builds the GraphServer from the function's spec file ($GRAPHPACK_SPEC_FILE,
else ``spec.json`` next to the entry module, else the JSON in $GRAPHPACK_SPEC), with the
user's code modules as the namespaces class names resolve in. When $GRAPHPACK_QUEUE_CONSUMER
names a queue (an S3 or file queue: Nuclio has no trigger for them) it also starts graphpack's
own consumer on it, as consumer group $GRAPHPACK_CONSUMER_GROUP, in a background thread.

This module runs inside the image: it imports graphpack's runtime only.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from ..errors import GraphpackError
from ..runtime.deps import missing_in
from ..runtime import otel, tracing
from ..runtime.event import Event
from ..runtime.tracing import current_event, current_trace_id, trace_id
from ..runtime.server import GraphServer
from .events import from_http, from_nuclio, is_stream, trigger_kind
from .responses import error_output, error_response, http_reply, to_nuclio

SPEC_FILE = "spec.json"
SPEC_FILE_ENV = "GRAPHPACK_SPEC_FILE"
SPEC_ENV = "GRAPHPACK_SPEC"
CONSUMER_ENV = "GRAPHPACK_QUEUE_CONSUMER"
GROUP_ENV = "GRAPHPACK_CONSUMER_GROUP"

_lock = threading.Lock()
_state: dict[str, Any] = {"server": None, "consumers": []}


class NuclioLogger:
    """graphpack's logger API (``error(msg, **kw)``) on top of Nuclio's (``error_with``)."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def _log(self, level: str, message: Any, args: tuple, kw: dict) -> None:
        text = str(message) % args if args else str(message)
        trace = current_trace_id()
        if trace is not None and "trace_id" not in kw:
            kw = {**kw, "trace_id": trace}
        if kw:
            getattr(self._logger, f"{level}_with")(text, **kw)
        else:
            getattr(self._logger, level)(text)

    def debug(self, message: Any, *args: Any, **kw: Any) -> None:
        self._log("debug", message, args, kw)

    def info(self, message: Any, *args: Any, **kw: Any) -> None:
        self._log("info", message, args, kw)

    def warn(self, message: Any, *args: Any, **kw: Any) -> None:
        self._log("warn", message, args, kw)

    warning = warn

    def error(self, message: Any, *args: Any, **kw: Any) -> None:
        self._log("error", message, args, kw)

    def debug_with(self, message: Any, **kw: Any) -> None:
        self._log("debug", message, (), kw)

    def info_with(self, message: Any, **kw: Any) -> None:
        self._log("info", message, (), kw)

    def warn_with(self, message: Any, **kw: Any) -> None:
        self._log("warn", message, (), kw)

    def error_with(self, message: Any, **kw: Any) -> None:
        self._log("error", message, (), kw)

    def set_level(self, level: Any) -> None:
        """Nuclio's processor decides the level; kept for the GraphContext API."""


def load_spec(spec_dir: str | None = None) -> dict:
    """The function's serving spec: $GRAPHPACK_SPEC_FILE, ``<spec_dir>/spec.json``, $GRAPHPACK_SPEC."""
    candidates = []
    if os.environ.get(SPEC_FILE_ENV):
        candidates.append(os.environ[SPEC_FILE_ENV])
    if spec_dir:
        candidates.append(os.path.join(spec_dir, SPEC_FILE))
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
    data = os.environ.get(SPEC_ENV)
    if data:
        return json.loads(data)
    where = " or ".join(candidates) or "(no spec file)"
    raise GraphpackError(f"no serving spec found: neither {where} nor ${SPEC_ENV}")


def init_context(context: Any, modules: Iterable[str] = (), spec_dir: str | None = None,
                 spec: dict | None = None, namespaces: list | None = None) -> GraphServer:
    """Build this worker's GraphServer (and queue consumer); store it on ``context.user_data``.

    Class and handler names resolve in ``namespaces`` (e.g. a module's globals()), then ``modules``."""
    logger = NuclioLogger(context.logger) if getattr(context, "logger", None) is not None else None
    try:
        spec = spec if spec is not None else load_spec(spec_dir)
        namespaces = list(namespaces or []) + [importlib.import_module(name) for name in modules]
        server = GraphServer.from_dict(spec)
        server.init_states(context=context, namespace=namespaces, logger=logger)
        server.init_object(namespaces)
    except Exception as exc:
        if logger is not None and missing_in(exc) is None:  # the wrapper dies next: leave the reason
            # in the function's logs (a missing package was logged once, where it was found)
            logger.error(f"graphpack: function failed to initialise: {type(exc).__name__}: {exc}")
        raise
    user_data = getattr(context, "user_data", None)
    if user_data is not None:
        try:
            user_data.graph_server = server
        except AttributeError:
            pass
    with _lock:
        _state["server"] = server
    platform = getattr(context, "platform", None)
    if platform is not None and hasattr(platform, "set_termination_callback"):
        platform.set_termination_callback(lambda: shutdown(timeout=10))
    if platform is not None and hasattr(platform, "set_drain_callback"):  # stream rebalance: finish in-flight
        platform.set_drain_callback(lambda: server.wait_for_completion(10))
    url = os.environ.get(CONSUMER_ENV)
    if url:
        start_consumer(server, url, os.environ.get(GROUP_ENV) or "graphpack")
    return server


def get_server(context: Any = None) -> GraphServer | None:
    """The GraphServer ``init_context`` built for this worker."""
    server = getattr(getattr(context, "user_data", None), "graph_server", None)
    return server if isinstance(server, GraphServer) else _state["server"]


def handler(context: Any, event: Any) -> Any:
    """Run one Nuclio event through the graph and return the wrapper's response object.

    The response is returned once every queue record the event produced is durable (DESIGN
    §4.9). Under graphpack's processor (``context.deferred_replies``) an HTTP event whose records
    are still being written returns a ``Future`` of the response instead, so that the worker
    runs the next event meanwhile and concurrent events share one write."""
    server = get_server(context)
    if server is None:
        return error_output(503, "the function is not initialised (init_context was not called)", context)
    entered = None
    status = 500
    try:
        kind = trigger_kind(event, context)
        graph_event = from_nuclio(event, context, kind)
        entered = _enter(graph_event, "consumer" if is_stream(kind) else "server")
        response, writes = _run(server, graph_event)
        status = response.status_code
    except Exception as exc:  # noqa: BLE001 - never let the wrapper send a traceback
        _logger(server).error(f"graphpack: event handling failed: {type(exc).__name__}: {exc}")
        return error_output(500, f"{type(exc).__name__}: {exc}", context)
    finally:
        if entered is not None:
            _leave(entered, status)
    if writes is not None:
        if kind == "http" and getattr(context, "deferred_replies", False):
            reply: Future = Future()
            writes.when_done(lambda failure: reply.set_result(
                to_nuclio(_traced(server.settle(response, failure), graph_event), context)))
            return reply
        response = server.settle(response, writes.wait())
    if response.status_code >= 400 and is_stream(kind):
        _logger(server).error(f"graphpack: stream event {graph_event.id} failed "
                              f"({response.status_code}): {response.body}", trace_id=trace_id(graph_event.traceparent))
    return to_nuclio(_traced(response, graph_event), context)


def _enter(event: Event, kind: str) -> tuple:
    """Start running ``event`` here: log lines name its trace; with spans on, its span opens
    (``kind``: "server" or "consumer"). Pair with :func:`_leave`."""
    return current_event.set(event), (otel.start_event(event, kind) if otel.tracer is not None else None)


def _leave(entered: tuple, status: int) -> None:
    token, span = entered
    current_event.reset(token)
    if span is not None:
        otel.end_event(span, status)


def _traced(response: Any, event: Event) -> Any:
    """The response with the event's ``traceparent`` header, when the event has one (the caller
    sent it, or the graph used it: a queue record, an error, a log line)."""
    traceparent = event.__dict__.get("traceparent")
    if traceparent is not None:
        response.headers = {tracing.HEADER: traceparent, **(response.headers or {})}
    return response


def http_app(context: Any) -> Callable[[Any], tuple | Future | None]:
    """``handler`` for the requests of graphpack's own http trigger (``graphpack serve``) on the
    worker ``context`` was initialised for, without the Nuclio-shaped event and response objects:
    a function of a parsed request that gives the same answer as (status, content type, headers,
    body bytes), or a Future of it while the event's queue writes complete. It gives None when the
    request needs ``handler`` (a Knative KafkaSource CloudEvent). A Future fails if its answer
    cannot be encoded (the processor answers 500, as for ``handler``)."""
    server = get_server(context)
    if server is None:
        not_ready = http_reply(error_response(503, "the function is not initialised (init_context was not called)"))
        return lambda request: not_ready
    run = functools.partial(_run, server) if server.sync_with_async_steps else server.run_deferred
    logger = _logger(server)

    def answer(request: Any) -> tuple | Future | None:
        entered = None
        status = 500
        try:
            graph_event = from_http(request)
            if graph_event is None:
                return None
            entered = _enter(graph_event, "server")
            response, writes = run(graph_event)
            status = response.status_code
        except Exception as exc:  # noqa: BLE001 - never send a traceback
            logger.error(f"graphpack: event handling failed: {type(exc).__name__}: {exc}")
            return http_reply(error_response(500, f"{type(exc).__name__}: {exc}"))
        finally:
            if entered is not None:
                _leave(entered, status)
        if writes is None:
            return http_reply(_traced(response, graph_event))
        reply: Future = Future()

        def send(failure: Any) -> None:
            try:
                reply.set_result(http_reply(_traced(server.settle(response, failure), graph_event)))
            except Exception as exc:  # noqa: BLE001 - the processor answers 500
                reply.set_exception(exc)

        writes.when_done(send)
        return reply

    return answer


def _run(server: GraphServer, event: Event) -> Any:
    """``server.run_deferred(event)``; a sync graph with async steps runs on a helper thread when
    the caller is inside a running event loop (Nuclio's wrapper calls sync handlers from its loop)."""
    if server.sync_with_async_steps:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return server.run_deferred(event)
        with _lock:
            if _state.get("executor") is None:
                from concurrent.futures import ThreadPoolExecutor  # here: rarely needed, slower to import

                _state["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphpack-handler")
            executor = _state["executor"]
        return executor.submit(server.run_deferred, event).result()
    return server.run_deferred(event)


def _logger(server: GraphServer) -> Any:
    from ..runtime.logger import logger

    return server.context.logger if server.context is not None else logger


# -- graphpack's own queue consumer (queues Nuclio has no trigger for) ---------------------------
def _queue_step(spec: dict, url: str) -> tuple[str, dict]:
    """(name, step) of the queue step with path ``url`` in the spec's graph (("", {}) if none)."""
    steps = (spec.get("graph") or {}).get("steps") or {}
    for name, step in steps.items():
        if isinstance(step, dict) and step.get("kind") == "queue" and _same_queue(step, url):
            return str(step.get("name") or name), step
    return "", {}


def _queue_options(spec: dict, url: str) -> dict:
    """Backend options of the queue step with path ``url`` in the spec's graph."""
    _, step = _queue_step(spec, url)
    if not step:
        return {}
    options = {k: v for k, v in (step.get("options") or {}).items() if k not in ("full_event", "group")}
    if step.get("shards"):
        options["shards"] = step["shards"]
    return options


def _same_queue(step: dict, url: str) -> bool:
    """The queue step reads ``url``: the same path, or the same Kafka brokers and topic (a
    kafka-cluster trigger names them apart from how the step wrote them)."""
    path = step.get("path")
    if path == url:
        return True
    brokers = (step.get("options") or {}).get("kafka_brokers")
    if not isinstance(path, str) or not path or not url.startswith("kafka://"):
        return False
    if not path.startswith("kafka://") and not brokers:
        return False
    from ..queues.kafka import parse_url

    try:
        return parse_url(path, brokers) == parse_url(url)
    except GraphpackError:
        return False


def start_consumer(server: GraphServer, url: str, group: str) -> Any:
    """Consume queue ``url`` as ``group`` in a daemon thread, running each record through the graph."""
    from ..queues import StorageError, open_queue
    from ..queues.consumer import Consumer
    from ..runtime import metrics

    spec = server.to_dict()
    watch = None
    if metrics.recorder is not None:  # graphpack serve records metrics: count the records
        watch = metrics.ConsumerWatch(metrics.recorder.queue(_queue_step(spec, url)[0] or url))
    with _lock:
        for consumer in _state["consumers"]:
            if consumer.queue.url == url and consumer.group == group:
                return consumer  # one consumer per process, however many workers init
        queue = open_queue(url, **_queue_options(spec, url))

        def handle(record: Any, item: Any) -> Any:
            from ..queues import record as wire

            event = wire.unwrap(record, Event)
            event.trigger, event.stream_path = "queue", url
            event.offset, event.shard_id = item.offset, item.shard
            entered, status = _enter(event, "consumer"), 500
            try:
                response, writes = server.run_deferred(event)
                status = response.status_code
            finally:
                _leave(entered, status)
            if response.status_code == 503 and "Retry-After" in (response.headers or {}):
                raise StorageError(f"event {event.id}: {response.body.get('error')}")  # delivered again later
            if response.status_code >= 400:
                raise RuntimeError(f"event {event.id} (trace_id {trace_id(event.traceparent)}) failed "
                                   f"({response.status_code}): {response.body}")
            if watch is not None:
                watch.handled(item, record)
            return writes  # the batch is committed once they are durable (Consumer checks them)

        consumer = Consumer(queue, group, handle, on_error=None if watch is None else watch.failed)
        if watch is not None and metrics.recorder is not None:
            watch.watch(consumer, metrics.recorder)
        thread = threading.Thread(target=consumer.run, name=f"graphpack-consumer-{group}", daemon=True)
        consumer.thread = thread  # type: ignore[attr-defined]
        _state["consumers"].append(consumer)
        thread.start()
    if server.context is not None:
        server.context.logger.info(f"graphpack: consuming queue {url} as group {group}")
    return consumer


def shutdown(timeout: float | None = 10) -> None:
    """Stop the queue consumers, let in-flight async events finish and flush the queues the graph
    pushes to (the termination callback)."""
    with _lock:
        consumers, _state["consumers"] = list(_state["consumers"]), []
        server = _state["server"]
        executor, _state["executor"] = _state.get("executor"), None
    if executor is not None:
        executor.shutdown(wait=True)
    for consumer in consumers:
        consumer.stop()
    for consumer in consumers:
        consumer.thread.join(timeout)  # type: ignore[attr-defined]
        consumer.queue.close()
    if server is not None:
        server.wait_for_completion(timeout)
        server.close()
    otel.shutdown()  # export the spans still buffered


def reset() -> None:
    """Forget this process's server (tests, or a processor reloading a function)."""
    shutdown(timeout=5)
    with _lock:
        _state["server"] = None
