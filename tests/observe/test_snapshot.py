"""observe/snapshot.py: figures from two scrapes of expositions written by prometheus-client itself
(the same text format and histogram semantics a Prometheus server reads)."""
from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from graphpack.observe.deployment import Deployment, Function
from graphpack.observe.snapshot import Scrape, figures, increases, parse, quantile

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class FakeFunction:
    """One function's metrics, with the names and labels graphpack serve exposes."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.registry = CollectorRegistry()
        self.events = Counter("graphpack_step_events", "", ["function", "step"], registry=self.registry)
        self.errors = Counter("graphpack_step_errors", "", ["function", "step"], registry=self.registry)
        self.duration = Histogram("graphpack_step_duration_seconds", "", ["function", "step"], buckets=BUCKETS,
                                  registry=self.registry)
        self.pushed = Counter("graphpack_queue_records_pushed", "", ["function", "queue"], registry=self.registry)
        self.consumed = Counter("graphpack_queue_records_consumed", "", ["function", "queue", "shard"],
                                registry=self.registry)
        self.lag = Gauge("graphpack_queue_lag_records", "", ["function", "queue", "shard"], registry=self.registry)
        self.lag_seconds = Gauge("graphpack_queue_lag_seconds", "", ["function", "queue", "shard"],
                                 registry=self.registry)
        self.requests = Counter("graphpack_http_requests", "", ["function", "code"], registry=self.registry)
        self.in_flight = Gauge("graphpack_http_requests_in_flight", "", ["function"], registry=self.registry)

    def run(self, step: str, seconds: float, n: int = 1, failed: bool = False) -> None:
        for _ in range(n):
            self.events.labels(self.function, step).inc()
            self.duration.labels(self.function, step).observe(seconds)
            if failed:
                self.errors.labels(self.function, step).inc()

    def scrape(self, at: float) -> Scrape:
        return Scrape(at, parse(generate_latest(self.registry).decode()))


def deployment() -> Deployment:
    return Deployment(Path("/p"), "local", {"root": Function("root", "http://127.0.0.1:1", "root"),
                                            "child": Function("child", "http://127.0.0.1:2", "root")},
                      {"root": {"error_stream": "errors"}})


def test_rates_quantiles_and_errors_over_the_interval_between_two_scrapes() -> None:
    root, child = FakeFunction("root"), FakeFunction("child")
    root.run("enrich", 0.002, n=100)           # before the first scrape: counted, not in the rates
    before = {"root": root.scrape(10.0), "child": child.scrape(10.0)}
    root.run("enrich", 0.02, n=40)
    root.run("enrich", 0.3, n=10, failed=True)
    root.pushed.labels("root", "q").inc(50)
    child.consumed.labels("child", "q", "0").inc(30)
    child.consumed.labels("child", "q", "1").inc(15)
    child.lag.labels("child", "q", "0").set(3)
    child.lag.labels("child", "q", "1").set(2)
    child.lag_seconds.labels("child", "q", "0").set(0.5)
    child.lag_seconds.labels("child", "q", "1").set(1.5)
    root.requests.labels("root", "200").inc(40)
    root.requests.labels("root", "500").inc(10)
    now = {"root": root.scrape(12.0), "child": child.scrape(12.0)}

    snap = figures(deployment(), now, before)
    enrich = snap["graphs"]["root"]["steps"]["enrich"]
    assert enrich["events"] == 150 and enrich["errors"] == 10
    assert enrich["rate"] == pytest.approx(25.0) and enrich["errors_per_s"] == pytest.approx(5.0)
    # 40 of the 50 new events took 20 ms (bucket 10-50 ms), 10 took 300 ms (bucket 100-500 ms)
    assert 0.01 < enrich["p50"] < 0.05 and 0.1 < enrich["p99"] <= 0.5
    assert enrich["functions"] == ["root"]
    queue = snap["graphs"]["root"]["queues"]["q"]
    assert queue["push_rate"] == pytest.approx(25.0) and queue["consume_rate"] == pytest.approx(22.5)
    assert queue["pushed"] == 50 and queue["consumed"] == 45
    assert queue["lag_records"] == 5 and queue["lag_seconds"] == 1.5  # records add up, seconds: the worst shard
    assert snap["functions"]["root"]["requests_per_s"] == pytest.approx(25.0)
    assert snap["functions"]["root"]["errors_5xx_per_s"] == pytest.approx(5.0)
    assert snap["graphs"]["root"]["error_stream"] == "/p/errors"
    assert snap["interval"] == 2.0


def test_a_first_scrape_has_totals_and_quantiles_but_no_rates() -> None:
    root = FakeFunction("root")
    root.run("enrich", 0.002, n=10)
    snap = figures(deployment(), {"root": root.scrape(1.0), "child": Scrape(1.0, error="refused")}, {})
    enrich = snap["graphs"]["root"]["steps"]["enrich"]
    assert enrich["events"] == 10 and enrich["rate"] is None and 0.001 < enrich["p50"] <= 0.005
    assert snap["functions"]["child"] == {"url": "http://127.0.0.1:2", "root": "root", "up": False, "error": "refused"}


def test_a_restarted_function_counts_from_zero_again() -> None:
    old, new = FakeFunction("root"), FakeFunction("root")
    old.run("enrich", 0.002, n=100)
    new.run("enrich", 0.002, n=7)
    assert [v for _, v in increases(new.scrape(2.0), old.scrape(1.0), "graphpack_step_events_total")] == [7]


def test_a_step_running_in_two_functions_adds_up() -> None:
    root, child = FakeFunction("root"), FakeFunction("child")
    before = {"root": root.scrape(0.0), "child": child.scrape(0.0)}
    root.run("log", 0.002, n=10)
    child.run("log", 0.2, n=10)
    snap = figures(deployment(), {"root": root.scrape(1.0), "child": child.scrape(1.0)}, before)
    step = snap["graphs"]["root"]["steps"]["log"]
    assert step["rate"] == pytest.approx(20.0) and sorted(step["functions"]) == ["child", "root"]
    assert step["p50"] <= 0.005 and step["p99"] > 0.1  # one histogram over both


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, {0.1: 0, 0.2: 10, float("inf"): 10}, 0.15),
    (0.99, {0.1: 50, 1.0: 100, float("inf"): 100}, 0.1 + 0.9 * 49 / 50),
    (0.5, {0.1: 0, float("inf"): 4}, 0.1),     # beyond the last finite bound: that bound
    (0.5, {0.1: 0, float("inf"): 0}, None),   # no observations
    (0.5, {}, None),
])
def test_quantile_as_prometheus_histogram_quantile(q: float, buckets: dict, expected: float | None) -> None:
    found = quantile(q, buckets)
    assert found == (pytest.approx(expected) if expected is not None else None)


def test_parse_rejects_what_is_not_the_text_format() -> None:
    with pytest.raises(ValueError):
        parse('{"not": "metrics"}\n')


def test_sampler_scrapes_every_function_at_once_and_names_one_that_does_not_answer() -> None:
    """Real sockets: one function serves its exposition, two accept connections and never answer."""
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from graphpack.observe.snapshot import Sampler

    served = FakeFunction("root")
    served.run("enrich", 0.003, n=5)

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = generate_latest(served.registry)
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    functions = {"root": Function("root", base, "root"), "off": Function("off", base + "/graph", "root")}
    for i, sock in enumerate(silent):
        functions[f"stuck{i}"] = Function(f"stuck{i}", f"http://127.0.0.1:{sock.getsockname()[1]}", "root")
    sampler = Sampler(lambda: Deployment(Path("/p"), "local", functions, {"root": {}}), timeout=1.0)
    try:
        started = time.monotonic()
        snap = sampler.sample()
        took = time.monotonic() - started
    finally:
        sampler.close()
        server.shutdown()
        server.server_close()
        for sock in silent:
            sock.close()
    assert took < 1.8, took  # the two silent ones waited side by side, not one after the other
    assert snap["functions"]["root"]["up"] and snap["graphs"]["root"]["steps"]["enrich"]["events"] == 5
    for name in ("stuck0", "stuck1"):
        assert not snap["functions"][name]["up"] and "/metrics" in snap["functions"][name]["error"]
    assert snap["functions"]["off"]["error"].startswith(f"{base}/graph/metrics answered 404 (served with metrics off")
