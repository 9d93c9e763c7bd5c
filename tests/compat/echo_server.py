"""A small HTTP server on 127.0.0.1 that remote steps call in the differential test.

``/status/<code>`` answers that status; ``/text`` answers plain text; ``/slow`` waits two
seconds; any other path echoes the request as JSON: method, path, the JSON body and the
event-id/path headers a remote step sends.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from contextlib import contextmanager


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.startswith("/status/"):
            self._answer(int(self.path.split("/")[2]), b'{"detail": "as asked"}', "application/json")
            return
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/text":
            self._answer(200, b"plain text answer", "text/plain")
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        seen = {k.lower(): v for k, v in self.headers.items()
                if k.lower() in ("mlrun-event-path", "content-type")}
        answer = {"method": self.command, "path": self.path, "body": body, "headers": seen}
        self._answer(200, json.dumps(answer).encode(), "application/json")

    def _safe(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = _safe


@contextmanager
def echo_server() -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
