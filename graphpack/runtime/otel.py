"""OpenTelemetry spans per event and per step, exported over OTLP/HTTP.

On when ``$OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and
the SDK is installed (``pip install graphpack[otel]``: opentelemetry-sdk and the OTLP/HTTP
exporter); the exporter reads the standard ``OTEL_*`` variables (headers, timeout, batch
delays). Off, nothing is imported and no step is wrapped: the cost is one ``is None`` test per
event.

Each event gets a span named after the function (``$OTEL_SERVICE_NAME``, else the function's
name), a child of the event's incoming ``traceparent``; the event's traceparent then names that
span, so queue records carry it and a child function's event span is its child. Each step's call
is a span under the event's span; a step that raises marks its span as failed.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

from .tracing import current_event

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

tracer: Any = None  # the SDK's tracer once set up in this process; None while spans are off
_provider: Any = None
_service = ""
_lock = threading.Lock()


def wanted() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_ENVS)


def setup(service: str, logger: Any = None) -> Any:
    """The process's tracer (set up once) when spans are wanted and the SDK is importable, else None."""
    global tracer, _provider, _service
    if tracer is not None or not wanted():
        return tracer
    with _lock:
        if tracer is not None:
            return tracer
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            if logger is not None:
                logger.warn(f"graphpack: {ENDPOINT_ENVS[0]} is set but the OpenTelemetry SDK cannot be imported "
                            f"({exc}); no spans are exported (pip install graphpack[otel])")
            return None
        _service = os.environ.get("OTEL_SERVICE_NAME") or service
        _provider = TracerProvider(resource=Resource.create({"service.name": _service}))
        _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer = _provider.get_tracer("graphpack")
    return tracer


def shutdown() -> None:
    """Export the spans still buffered (the function is stopping)."""
    global tracer, _provider
    provider, _provider, tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def start_event(event: Any, kind: str = "server") -> Any:
    """Open the event's span (a child of its traceparent) and make the event's traceparent name it."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract({"traceparent": event.traceparent})
    span_kind = trace.SpanKind.CONSUMER if kind == "consumer" else trace.SpanKind.SERVER
    span = tracer.start_span(_service, context=parent, kind=span_kind,
                             attributes={"graphpack.event_id": str(event.id)})
    own = span.get_span_context()
    event.traceparent = f"00-{own.trace_id:032x}-{own.span_id:016x}-{int(own.trace_flags):02x}"
    event.__dict__["_otel_context"] = trace.set_span_in_context(span, parent)
    return span


def end_event(span: Any, status: int | None = None) -> None:
    """Close an event's span; a status of 500 or more marks it failed."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR))
    span.end()


def instrument(nodes: list) -> None:
    """Give every step call (routes included) a span under its event's span."""
    from .metrics import _with_routes

    seen: set[int] = set()
    for node in _with_routes(nodes):
        if id(node) in seen:
            continue
        seen.add(id(node))
        node.call = _spanned(node.call, node.fullname, node.is_async)
        if node.body_fn is not None:
            node.body_fn = _spanned(node.body_fn, node.fullname, False)


def _start(name: str) -> Any:
    event = current_event.get()
    parent = event.__dict__.get("_otel_context") if event is not None else None
    return tracer.start_span(name, context=parent)


def _failed(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status < 500:  # a deliberate answer (HTTPError), not a failure
        return
    if exc.__class__.__name__ != "StepError":  # another step's failure passing through
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _spanned(fn: Callable, name: str, is_async: bool) -> Callable:
    if is_async:
        async def spanned_async(arg: Any) -> Any:
            span = _start(name)
            try:
                return await fn(arg)
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                span.end()
        return spanned_async

    def spanned(arg: Any) -> Any:
        span = _start(name)
        try:
            return fn(arg)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()
    return spanned


__all__ = ["end_event", "instrument", "setup", "shutdown", "start_event", "tracer", "wanted"]
