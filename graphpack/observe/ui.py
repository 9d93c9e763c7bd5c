"""``graphpack ui``: a page on 127.0.0.1 that draws the deployed graphs and overlays live figures.

One thread samples the deployment every ``interval`` seconds (snapshot.py) and reads the graphs'
error streams (errors.py); a stdlib HTTP server answers the page, its script and style (package
data, nothing from elsewhere: the Content-Security-Policy allows this origin only), each graph as
SVG (graph/plot.py's layout, steps boxed by function) and two JSON endpoints the page polls:
``/api/snapshot`` and ``/api/errors?root=R&step=S``.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from ..errors import GraphpackError
from .deployment import Deployment
from .errors import ErrorLog
from .snapshot import Sampler

HOST = "127.0.0.1"
STATIC = {"/": ("ui.html", "text/html; charset=utf-8"), "/ui.js": ("ui.js", "text/javascript; charset=utf-8"),
          "/ui.css": ("ui.css", "text/css; charset=utf-8")}
POLICY = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
NO_ERROR_STREAM = ("this graph has no error stream: failed events are counted but not kept "
                   "(set fn.spec.error_stream to see them here)")


class Observer:
    """The latest snapshot of a deployment and the recent records of its error streams, refreshed
    every ``interval`` seconds by a thread of its own."""

    def __init__(self, load: Callable[[], Deployment], interval: float = 1.0) -> None:
        self.load = load
        self.interval = interval
        self.sampler = Sampler(load)
        self.error_logs: dict[str, ErrorLog] = {}
        self.snapshot: dict = {}
        self.deployment: Deployment | None = None
        self._svgs: dict[str, tuple[str, str]] = {}  # root -> (digest of its spec, svg)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graphpack-ui-sampler", daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.sampler.close()
        for log in self.error_logs.values():
            log.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - e.g. everything was taken down: say so, keep trying
                problem = str(exc) if isinstance(exc, GraphpackError) else f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.snapshot = {**self.snapshot, "time": time.time(), "problem": problem}

    def refresh(self) -> None:
        snapshot = self.sampler.sample()
        deployment = self.sampler.last_deployment
        for root, graph in snapshot["graphs"].items():
            url = graph["error_stream"]
            if not url:
                graph["error_note"] = NO_ERROR_STREAM
                continue
            log = self.error_logs.get(root)
            if log is None or log.url != url:
                if log is not None:
                    log.close()
                try:
                    log = self.error_logs[root] = ErrorLog(url)
                except GraphpackError as exc:  # e.g. a backend whose package is not installed here
                    self.error_logs.pop(root, None)
                    graph["error_note"] = f"cannot read the error stream {url!r}: {exc}"
                    continue
            log.poll()
            graph["error_note"] = log.error
        with self._lock:
            self.snapshot, self.deployment = snapshot, deployment

    def latest(self) -> dict:
        with self._lock:
            return self.snapshot

    def svg(self, root: str) -> str:
        """The graph of ``root`` as SVG: steps boxed by function, each node ``id="step:<name>"``."""
        from ..graph.plot import plot_graph

        with self._lock:
            deployment = self.deployment
        if deployment is None or root not in deployment.specs:
            raise KeyError(root)
        digest = hashlib.sha256(json.dumps(deployment.specs[root], sort_keys=True).encode()).hexdigest()
        cached = self._svgs.get(root)
        if cached and cached[0] == digest:
            return cached[1]
        dot = plot_graph(deployment.graph(root), root_function=root, spare_lines=2, nodesep="0.5", ranksep="0.45")
        try:
            svg = dot.pipe(format="svg").decode()
        except Exception as exc:  # graphviz.ExecutableNotFound, a failed dot run
            raise GraphpackError(f"cannot draw the graph of {root!r} with graphviz's dot: {exc} "
                                 "(apt-get install graphviz)") from None
        self._svgs[root] = (digest, svg)
        return svg

    def errors(self, root: str, step: str) -> dict:
        """The recent error-stream records of ``step`` in ``root``'s graph (newest first)."""
        graph = self.latest().get("graphs", {}).get(root)
        if graph is None:
            raise KeyError(root)
        log = self.error_logs.get(root)
        figures = graph["steps"].get(step, {})
        out = {"root": root, "step": step, "error_stream": graph["error_stream"],
               "errors": figures.get("errors", 0), "note": graph.get("error_note", ""), "records": []}
        if log is not None and graph["error_stream"]:
            out["records"] = log.recent(step)
        return out


def _handler(observer: Observer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "graphpack-ui"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):  # another name resolving here (DNS rebinding)
                self._json(403, {"error": f"graphpack ui answers 127.0.0.1 and localhost only, not {host!r}"})
                return
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path in STATIC:
                    name, kind = STATIC[url.path]
                    self._send(200, kind, resources.files(__package__).joinpath(name).read_bytes())
                elif url.path == "/graph.svg":
                    self._send(200, "image/svg+xml", observer.svg(query.get("root", "")).encode())
                elif url.path == "/api/snapshot":
                    self._json(200, observer.latest())
                elif url.path == "/api/errors":
                    self._json(200, observer.errors(query.get("root", ""), query.get("step", "")))
                else:
                    self._json(404, {"error": f"no such page: {url.path}"})
            except KeyError as exc:
                self._json(404, {"error": f"no deployed graph {exc.args[0]!r}"})
            except GraphpackError as exc:
                self._json(500, {"error": str(exc)})

        def _json(self, status: int, data: Any) -> None:
            self._send(status, "application/json", json.dumps(data, default=str).encode())

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", POLICY)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def make_server(observer: Observer, port: int = 0) -> ThreadingHTTPServer:
    """The page's HTTP server on 127.0.0.1:``port`` (0: a free port); serve_forever() runs it."""
    try:
        server = ThreadingHTTPServer((HOST, port), _handler(observer))
    except OSError as exc:
        raise GraphpackError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    return server
