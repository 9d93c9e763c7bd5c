"""Fixtures for serving tests: an iris model pickled on disk, a tiny route object, a local HTTP server."""
from __future__ import annotations

import json
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from graphpack.runtime.context import GraphContext


@pytest.fixture(scope="session")
def iris() -> Any:
    from sklearn.datasets import load_iris

    return load_iris()


@pytest.fixture(scope="session")
def iris_model_file(tmp_path_factory: pytest.TempPathFactory, iris: Any) -> Path:
    """A LogisticRegression trained on iris, pickled to model.pkl."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000).fit(iris["data"], iris["target"])
    path = tmp_path_factory.mktemp("iris") / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    return path


@pytest.fixture
def context() -> GraphContext:
    return GraphContext(parameters={"threshold": 0.5, "shared": "graph"})


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        server: Any = self.server
        server.requests.append({"method": self.command, "path": self.path,
                                "headers": dict(self.headers), "body": data})
        status, body, delay = server.script(self.command, self.path, data)
        if delay:
            time.sleep(delay)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = _reply


def default_script(method: str, path: str, data: bytes) -> tuple[int, Any, float]:
    """/ok echoes, /fail answers 500, /flaky fails twice then succeeds, /slow sleeps 2 s."""
    try:
        body = json.loads(data) if data else None
    except ValueError:
        body = data.decode(errors="replace")
    if path.startswith("/fail"):
        return 500, {"error": "boom"}, 0
    if path.startswith("/bad"):
        return 404, {"error": "no such thing"}, 0
    if path.startswith("/slow"):
        return 200, {"late": True}, 2.0
    return 200, {"method": method, "path": path, "echo": body}, 0


@pytest.fixture
def http_server() -> Iterator[Any]:
    """A real HTTP server on 127.0.0.1 (``.url``, ``.requests``, ``.script`` replaceable)."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = []
    server.script = default_script
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
