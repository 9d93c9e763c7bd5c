"""What counting one request costs: graphpack's recorder (graphpack/runtime/metrics.py) against
prometheus-client's metric objects in multiprocess mode, the same counts per request (in flight
up and down, the step's event and latency, the answer's status). bench/http.py prints it beside
the served figures, as the measured reason for the lighter path."""
from __future__ import annotations

import os
import shutil
import tempfile
import time

from graphpack.runtime import metrics
from graphpack.runtime.event import Event
from graphpack.runtime.metrics import Recorder
from graphpack.runtime.server import GraphServer

REQUESTS = 100_000


def recorder_us() -> float:
    """µs per request for graphpack's recorder (timed step + counted answer)."""
    recorder = Recorder("bench")
    stats = recorder.step("echo")
    clock = time.perf_counter
    start = clock()
    for _ in range(REQUESTS):
        began = clock()
        stats.observe(clock() - began)
        recorder.reply(200)
    return (clock() - start) / REQUESTS * 1e6


def graph_us(rounds: int = 5) -> tuple[float, float]:
    """Process CPU µs per event of the bench's 1-step graph run in process (no HTTP): (metrics
    off, metrics on), alternating rounds, medians; the difference is what timing the step costs."""
    def server(on: bool) -> GraphServer:
        (metrics.enable if on else lambda name: metrics.disable())("bench")
        graph = GraphServer.from_dict({"graph": {"kind": "flow", "engine": "sync", "steps": {
            "echo": {"kind": "task", "handler": "echo", "responder": True}}}})
        spaces = [{"echo": lambda body: body}]
        graph.init_states(namespace=spaces)
        graph.init_object(spaces)
        metrics.disable()
        return graph

    def run(graph: GraphServer) -> float:
        start = time.process_time()
        for _ in range(REQUESTS):
            graph._respond(Event({"inputs": [1, 2, 3]}))
        return (time.process_time() - start) / REQUESTS * 1e6

    off, on = server(False), server(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        times[False].append(run(off))
        times[True].append(run(on))
    return sorted(times[False])[rounds // 2], sorted(times[True])[rounds // 2]


def client_us() -> float | None:
    """µs per request for prometheus-client in multiprocess mode; None when it is not installed."""
    directory = tempfile.mkdtemp(prefix="graphpack-bench-prom-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        return _client_us()
    except ImportError:
        return None
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(directory, ignore_errors=True)


def _client_us() -> float:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry()
    events = Counter("graphpack_step_events_total", "", ["function", "step"], registry=registry)
    duration = Histogram("graphpack_step_duration_seconds", "", ["function", "step"], registry=registry)
    answers = Counter("graphpack_http_requests_total", "", ["function", "code"], registry=registry)
    in_flight = Gauge("graphpack_http_requests_in_flight", "", ["function"], multiprocess_mode="livesum",
                      registry=registry)
    clock = time.perf_counter
    start = clock()
    for _ in range(REQUESTS):
        in_flight.labels("bench").inc()
        began = clock()
        events.labels("bench", "echo").inc()
        duration.labels("bench", "echo").observe(clock() - began)
        answers.labels("bench", "200").inc()
        in_flight.labels("bench").dec()
    return (clock() - start) / REQUESTS * 1e6
