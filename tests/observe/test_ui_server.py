"""observe/ui.py without a browser: what the page's server answers, and how it degrades."""
from __future__ import annotations

import re
import socket
import threading
import time
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


def test_the_page_says_what_it_cannot_show(served, browser) -> None:
    """In the browser: no error stream, unreachable functions, an error handler's dashed edge."""
    from selenium.webdriver.common.by import By

    base, _, _ = served
    browser.get(base + "/")
    script = "return [...document.querySelectorAll('.errors-note')].map(p => p.textContent);"
    deadline = time.monotonic() + 20
    while browser.execute_script(script) != [NO_ERROR_STREAM] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser.execute_script(script) == [NO_ERROR_STREAM]
    problem = browser.find_element(By.ID, "problem")
    assert problem.is_displayed() and "api: http://127.0.0.1:" in problem.text and "/metrics" in problem.text
    assert browser.execute_script("return document.getElementById('step:parse').querySelectorAll('text')[1]"
                                  ".textContent;") == "no events yet"
    dashed = browser.execute_script("return [...document.querySelectorAll('svg g.edge')].filter(e => "
                                    "e.querySelector('path[stroke-dasharray]')).map(e => e.textContent.trim());")
    assert any("error" in text for text in dashed), dashed  # parse -> catch
    browser.find_element(By.ID, "step:parse").click()
    deadline = time.monotonic() + 10
    while NO_ERROR_STREAM not in browser.find_element(By.ID, "errors-hint").text and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser.find_element(By.ID, "errors-hint").text == f"0 error(s) counted; {NO_ERROR_STREAM}"
