"""observe/ui.py without a browser: what the page's server answers, and how it degrades."""
from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graphpack.errors import GraphpackError
from graphpack.observe.deployment import Deployment, Function
from graphpack.observe.ui import NO_ERROR_STREAM, Observer, make_server

GRAPH = {"kind": "flow", "steps": {
    "parse": {"kind": "task", "class_name": "Parse", "on_error": "catch"},
    "q": {"kind": "queue", "path": "/tmp/q", "after": ["parse"]},
    "store": {"kind": "task", "class_name": "Store", "after": ["q"], "function": "writer"},
    "catch": {"kind": "task", "class_name": "Catch"},
}}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Observer, dict]]:
    """A page for a deployment whose functions do not answer and whose graph has no error stream."""
    url = f"http://127.0.0.1:{closed_port()}"
    deployment = Deployment(tmp_path, "local", {"api": Function("api", url, "api"),
                                                "writer": Function("writer", url, "api")},
                            {"api": {"graph": GRAPH}})
    calls = {"n": 0}

    def load() -> Deployment:
        calls["n"] += 1
        if calls.get("fail"):
            raise GraphpackError("nothing is deployed here")
        return deployment

    observer = Observer(load, interval=0.1)
    observer.start()
    server = make_server(observer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", observer, calls
    finally:
        server.shutdown()
        server.server_close()
        observer.stop()


def test_graph_svg_has_a_node_per_step_boxed_by_function_with_the_error_edge(served) -> None:
    base, _, _ = served
    svg = httpx.get(base + "/graph.svg?root=api").text
    for step in ("parse", "q", "store", "catch"):
        assert f'id="step:{step}"' in svg
    assert "function api" in svg and "function writer" in svg
    assert ">error<" in svg and 'stroke-dasharray' in svg  # parse -> catch, dashed


def test_unreachable_functions_and_no_error_stream_are_said_plainly(served) -> None:
    base, _, _ = served
    snap = httpx.get(base + "/api/snapshot").json()
    assert not snap["functions"]["api"]["up"] and "/metrics" in snap["functions"]["api"]["error"]
    assert snap["graphs"]["api"]["error_note"] == NO_ERROR_STREAM
    errors = httpx.get(base + "/api/errors", params={"root": "api", "step": "parse"}).json()
    assert errors["records"] == [] and errors["note"] == NO_ERROR_STREAM and errors["error_stream"] is None


def test_a_failing_refresh_is_reported_and_the_page_keeps_answering(served) -> None:
    base, observer, calls = served
    calls["fail"] = True
    problem = None
    for _ in range(50):
        problem = httpx.get(base + "/api/snapshot").json().get("problem")
        if problem:
            break
        threading.Event().wait(0.1)
    assert problem == "nothing is deployed here"
    calls["fail"] = False


def test_static_files_policy_unknown_paths_and_foreign_hosts(served) -> None:
    base, _, _ = served
    page = httpx.get(base + "/")
    assert page.status_code == 200 and 'src="ui.js"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for path in ("/", "/ui.js", "/ui.css"):
        answer = httpx.get(base + path)
        assert answer.status_code == 200 and not re.search(r"https?:|//[a-z]", answer.text), path  # nothing external
    assert httpx.get(base + "/nope").status_code == 404
    assert httpx.get(base + "/graph.svg?root=other").json() == {"error": "no deployed graph 'other'"}
    rebound = httpx.get(base + "/api/snapshot", headers={"Host": "attacker.example:80"})
    assert rebound.status_code == 403
