"""/metrics of `graphpack serve`: real functions built from a graph, served by real worker
processes, driven and scraped over HTTP, the exposition parsed with prometheus-client's parser."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.test_processor import Served

REPO = Path(__file__).resolve().parents[2]

PROJECT = textwrap.dedent('''
    import graphpack

    # graphpack: start
    import time


    def pre(body):
        time.sleep(body.get("sleep", 0))
        return body

    def check(body):
        if body.get("fail"):
            raise ValueError("asked to fail")
        return body

    class Double:
        def do(self, body):
            return {**body, "x": body.get("x", 0) * 2}
    # graphpack: end

    project = graphpack.get_or_create_project("metrics", ".")
    fn = project.set_function("project.py", name="shop")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(handler="pre", name="pre").to(handler="check", name="check").to("Double", name="double").respond()
    fn.with_http(workers=WORKERS)
''')


def build(tmp_path: Path, workers: int, timeout_ms: int | None = None) -> Path:
    """The function's directory, built for the local target."""
    (tmp_path / "project.py").write_text(PROJECT.replace("WORKERS", str(workers)))
    subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "build",
                    "--target", "local"], cwd=tmp_path, check=True, capture_output=True)
    fdir = next((tmp_path / "build").iterdir())
    if timeout_ms:
        config = yaml.safe_load((fdir / "function.yaml").read_text())
        config["spec"]["triggers"]["http"]["workerAvailabilityTimeoutMilliseconds"] = timeout_ms
        (fdir / "function.yaml").write_text(yaml.safe_dump(config))
    return fdir


def Serve(fdir: Path, env: dict | None = None, args: tuple = ()) -> Served:
    """`python -m graphpack.serve DIR` on a free port."""
    return Served(fdir, env, args, command=("graphpack.serve",), timeout=30)


@pytest.fixture
def serve():
    servers: list[Served] = []

    def start(fdir: Path, env: dict | None = None, args: tuple = ()) -> Served:
        server = Serve(fdir, env, args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def scrape(url: str) -> dict:
    """{(sample name, frozenset of labels): value} of ``url``/metrics, checked by prometheus-client's parser."""
    response = httpx.get(url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(url: str, condition, timeout: float = 10.0) -> dict:
    """Scrape until ``condition(samples)`` holds (other workers' figures are up to a second old)."""
    deadline = time.time() + timeout
    while True:
        samples = scrape(url)
        if condition(samples) or time.time() > deadline:
            return samples
        time.sleep(0.2)


def test_steps_errors_and_status_codes_summed_over_workers(tmp_path, serve):
    server = serve(build(tmp_path, workers=2))
    sent = [{"x": i, "fail": i % 6 == 5} for i in range(37)]
    failing = sum(body["fail"] for body in sent)
    ok = len(sent) - failing
    with httpx.Client(base_url=server.url) as client:  # new connections spread over both workers
        for i in range(ok + failing):
            body = {"x": i, "fail": i % 6 == 5}
            response = httpx.post(server.url + "/", json=body) if i % 2 else client.post("/", json=body)
            assert response.status_code == (500 if body["fail"] else 200)
    fn = "metrics-shop"
    samples = wait_for(server.url, lambda s: value(s, "graphpack_step_events_total", function=fn, step="double") == ok
                       and value(s, "graphpack_step_events_total", function=fn, step="pre") == ok + failing)
    for step, events in (("pre", ok + failing), ("check", ok + failing), ("double", ok)):
        assert value(samples, "graphpack_step_events_total", function=fn, step=step) == events, step
        assert value(samples, "graphpack_step_duration_seconds_count", function=fn, step=step) == events
        assert value(samples, "graphpack_step_duration_seconds_bucket", function=fn, step=step, le="+Inf") == events
        assert value(samples, "graphpack_step_duration_seconds_sum", function=fn, step=step) > 0
    assert value(samples, "graphpack_step_errors_total", function=fn, step="check") == failing
    assert value(samples, "graphpack_step_errors_total", function=fn, step="pre") == 0
    assert value(samples, "graphpack_step_errors_total", function=fn, step="double") == 0
    assert value(samples, "graphpack_http_requests_total", function=fn, code="200") == ok
    assert value(samples, "graphpack_http_requests_total", function=fn, code="500") == failing
    assert value(samples, "graphpack_http_requests_in_flight", function=fn) == 0
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                     if name == "graphpack_step_duration_seconds_bucket" and dict(labels)["step"] == "pre")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    # the processor's own answers (health checks, scrapes) are not the function's requests
    assert sum(v for (name, _), v in samples.items() if name == "graphpack_http_requests_total") == ok + failing
    assert samples[("process_cpu_seconds_total", frozenset())] > 0
    assert samples[("process_resident_memory_bytes", frozenset())] > 10e6
    assert samples[("process_open_fds", frozenset())] > 0


def test_busy_rejections_and_in_flight(tmp_path, serve):
    server = serve(build(tmp_path, workers=1, timeout_ms=300))
    assert httpx.post(server.url + "/", json={"sleep": 0.05}).status_code == 200  # events are slow now
    slow = {}

    def nap() -> None:
        slow["status"] = httpx.post(server.url + "/", json={"sleep": 2.0}, timeout=10).status_code

    thread = threading.Thread(target=nap)
    thread.start()
    time.sleep(0.4)
    busy = [httpx.post(server.url + "/", json={}, timeout=10).status_code for _ in range(2)]
    during = scrape(server.url)  # answered by the worker's event loop while its handler sleeps
    thread.join()
    assert busy == [503, 503] and slow["status"] == 200
    fn = "metrics-shop"
    assert value(during, "graphpack_http_requests_in_flight", function=fn) == 1
    samples = scrape(server.url)
    assert value(samples, "graphpack_http_busy_rejections_total", function=fn) == 2
    assert value(samples, "graphpack_http_requests_total", function=fn, code="503") == 2
    assert value(samples, "graphpack_http_requests_total", function=fn, code="200") == 2
    assert value(samples, "graphpack_step_events_total", function=fn, step="pre") == 2  # rejected: never ran
    assert value(samples, "graphpack_http_requests_in_flight", function=fn) == 0
    assert value(samples, "graphpack_step_duration_seconds_bucket", function=fn, step="pre", le="1.0") == 1


def test_metrics_directory_is_wiped_at_start_and_a_killed_workers_counts_stay(tmp_path, serve):
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "4242.json").write_text(json.dumps(
        {"function": "metrics-shop", "pid": 4242, "steps": {"pre": [1000, 0, 1.0, [1000] + [0] * 16]}}))
    server = serve(build(tmp_path, workers=2), env={"GRAPHPACK_METRICS_DIR": str(directory)})
    for i in range(10):
        assert httpx.post(server.url + "/", json={"x": i}).status_code == 200  # a new connection each
    fn = "metrics-shop"
    samples = wait_for(server.url, lambda s: value(s, "graphpack_step_events_total", function=fn, step="pre") == 10)
    assert value(samples, "graphpack_step_events_total", function=fn, step="pre") == 10  # not 1010
    time.sleep(1.5)  # both workers wrote their snapshot (once a second)
    workers = [int(p.stem) for p in directory.glob("*.json")]
    assert 4242 not in workers
    killed = [p for p in workers if p != server.proc.pid]
    assert killed, workers  # else nothing below is tested
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)  # the supervisor starts replacements
    samples = wait_for(server.url, lambda s: False, timeout=0)
    assert value(samples, "graphpack_step_events_total", function=fn, step="pre") == 10
    server.stop()
    assert "was killed by signal 9" in server.output


def test_metrics_off_leaves_the_path_to_the_graph(tmp_path, serve):
    server = serve(build(tmp_path, workers=1), args=("--no-metrics",))
    response = httpx.get(server.url + "/metrics")
    assert "graphpack_step_events_total" not in response.text
    assert response.status_code == 500  # the graph ran: a GET has no body for pre() to read


def test_an_unusable_metrics_directory_turns_metrics_off_not_the_function(tmp_path, serve):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the directory should be")
    server = serve(build(tmp_path, workers=1), env={"GRAPHPACK_METRICS_DIR": str(blocker / "metrics")})
    assert httpx.post(server.url + "/", json={"x": 2}).json() == {"x": 4}
    assert "graphpack_step_events_total" not in httpx.get(server.url + "/metrics").text
    server.stop()
    assert f"metrics off: cannot use the metrics directory '{blocker}/metrics'" in server.output


def test_the_default_directory_goes_with_the_function_and_a_killed_ones_with_the_next_start(tmp_path, serve):
    parent = tmp_path / "graphpack-metrics"  # the default place under $TMPDIR
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, foreign = parent / "gone-1234", parent / "not-ours"
    for directory in (stale, foreign):
        directory.mkdir(parents=True)
    (stale / "supervisor.pid").write_text(str(dead.pid))
    server = serve(build(tmp_path, workers=1), env={"TMPDIR": str(tmp_path)})
    mine = parent / f"metrics-shop-{server.port}"
    assert mine.is_dir() and not stale.exists() and foreign.exists()
    server.stop()
    assert not mine.exists() and foreign.exists()
