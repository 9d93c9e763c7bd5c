"""OpenTelemetry spans over OTLP/HTTP: a root and a child function (graphpack serve, a file
queue between them) export to a receiver this test runs on 127.0.0.1, decoded with the
OpenTelemetry protobuf classes."""
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.runtime.test_metrics import Serve

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                                    reason="the OpenTelemetry protobuf classes (pip install graphpack[otel])")

PROJECT = textwrap.dedent('''
    import graphpack

    # graphpack: start
    class Pre:
        def do(self, body):
            return body


    class Check:
        def do(self, body):
            if body.get("fail"):
                raise ValueError("child refuses")
            return body
    # graphpack: end

    project = graphpack.get_or_create_project("otel", ".")
    fn = project.set_function("project.py", name="root")
    fn.set_topology("flow", engine="sync").to("Pre", name="pre").respond() \\
        .to(">>", "q1", path=QUEUE).to("Check", name="check", function="child")
    fn.add_child_function("child", "project.py")
    fn.with_http(workers=1)
''')

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Receiver:
    """An OTLP/HTTP traces endpoint: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service.ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            receiver.spans.append({
                                "service": attributes.get("service.name"), "name": span.name,
                                "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(), "error": span.status.code == 2})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, condition, timeout: float = 20.0) -> list[dict]:
        deadline = time.time() + timeout
        while not condition(self.spans) and time.time() < deadline:
            time.sleep(0.1)
        return list(self.spans)


def test_spans_per_event_and_step_join_root_and_child_in_one_trace(tmp_path):
    queue = tmp_path / "q1"
    (tmp_path / "project.py").write_text(PROJECT.replace("QUEUE", repr(str(queue))))
    subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "build",
                    "--target", "local"], cwd=tmp_path, check=True, capture_output=True)
    dirs = {p.name: p for p in (tmp_path / "build").iterdir()}
    receiver = Receiver()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    root, child = Serve(dirs["root"], env), Serve(dirs["child"], env)
    try:
        ok = httpx.post(root.url + "/", json={"n": 1}, headers={"traceparent": TRACE})
        bad = httpx.post(root.url + "/", json={"n": 2, "fail": True})
        assert ok.status_code == bad.status_code == 200
        assert ok.headers["traceparent"][3:35] == TRACE[3:35]  # the caller's trace, our span
        failed_trace = bad.headers["traceparent"][3:35]
        spans = receiver.wait(lambda s: sum(x["name"] == "check" for x in s) >= 4)  # 1 + 3 attempts
    finally:
        root.stop(), child.stop()
    by_trace: dict[str, list[dict]] = {}
    for span in spans:
        by_trace.setdefault(span["trace"], []).append(span)
    ok_spans = {(s["service"], s["name"]): s for s in by_trace[TRACE[3:35]]}
    assert set(ok_spans) == {("otel-root", "otel-root"), ("otel-root", "pre"), ("otel-root", "q1"),
                             ("otel-root-child", "otel-root-child"), ("otel-root-child", "check")}
    root_event, child_event = ok_spans[("otel-root", "otel-root")], ok_spans[("otel-root-child", "otel-root-child")]
    assert root_event["parent"] == TRACE[36:52]  # the caller's span
    assert ok_spans[("otel-root", "pre")]["parent"] == ok_spans[("otel-root", "q1")]["parent"] == root_event["id"]
    assert child_event["parent"] == root_event["id"]  # across the queue
    assert ok_spans[("otel-root-child", "check")]["parent"] == child_event["id"]
    assert not any(s["error"] for s in by_trace[TRACE[3:35]])
    checks = [s for s in by_trace[failed_trace] if s["name"] == "check"]
    assert len(checks) == 3 and all(s["error"] for s in checks)  # every attempt failed in check
    assert not any(s["error"] for s in by_trace[failed_trace] if s["service"] == "otel-root")


def test_spans_stay_off_without_an_endpoint():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent('''
        import sys
        from graphpack.runtime import otel
        from graphpack.runtime.server import GraphServer
        server = GraphServer.from_dict({"graph": {"kind": "flow", "steps": {
            "a": {"kind": "task", "handler": "json.dumps"}}}})
        server.init_states()
        server.init_object()
        print("tracer:", otel.tracer, "| opentelemetry imported:", "opentelemetry" in sys.modules)
    ''')], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tracer: None | opentelemetry imported: False", proc.stdout
