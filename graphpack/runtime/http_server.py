"""A small asyncio HTTP/1.1 server for the processor's http trigger.

The event loop does the I/O; each worker process runs events one at a time, as a Nuclio
worker does: fast events inline on the loop, slow ones on a handler thread so that the loop
stays free to answer a request that cannot get the worker within ``availability_timeout``
seconds with 503 and ``Retry-After``. A body over
``max_body_size`` gets 413. Keep-alive and pipelining are supported; chunked request
bodies are decoded.
"""
from __future__ import annotations

import asyncio
import collections
import mmap
import queue
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Payload Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
MAX_HEADER_BYTES = 64 * 1024
GATE_TICK = 0.02  # how often a busy worker rechecks whether every worker is busy
INLINE_LIMIT = 0.002  # events faster than this run inline on the event loop


class Request:
    """A parsed request (what the app callable receives)."""

    __slots__ = ("method", "path", "query", "headers", "body", "url", "content_type")

    def __init__(self, method: str, target: str, headers: dict, body: bytes) -> None:
        self.method = method
        self.url = target
        if "?" in target:
            parts = urlsplit(target)
            self.path, self.query = parts.path or "/", dict(parse_qsl(parts.query))
        else:
            self.path, self.query = target or "/", {}
        self.headers = headers
        self.body = body
        self.content_type = ""


Reply = tuple  # (status, content_type, headers, body bytes)
App = Callable[[Request], Reply]


_STATUS_LINES: dict = {}  # (status, content type) -> the response's first two lines, encoded


def render(status: int, content_type: str, headers: dict, body: bytes, keep_alive: bool = True) -> bytes:
    """The bytes of one response."""
    start = _STATUS_LINES.get((status, content_type))
    if start is None:
        start = _STATUS_LINES[(status, content_type)] = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
        ).encode("latin-1")
    extra = "".join(f"{key}: {value}\r\n" for key, value in headers.items()) if headers else ""
    if not keep_alive:
        extra += "Connection: close\r\n"
    return b"%sContent-Length: %d\r\n%s\r\n%s" % (start, len(body), extra.encode("latin-1"), body)


class HandlerThread:
    """Runs calls (HTTP requests, cron ticks) one at a time off the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="graphpack-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, arg, future = job
            try:
                result = fn(arg)
            except Exception as exc:  # noqa: BLE001 - the app maps errors itself; this is a last resort
                result = (500, "text/plain", {}, f"internal error: {type(exc).__name__}".encode())
            self.loop.call_soon_threadsafe(_resolve, future, result)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future:
        future = self.loop.create_future()
        self.jobs.put((fn, arg, future))
        return future

    def stop(self) -> None:
        self.jobs.put(None)


def _resolve(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.pending: list[asyncio.Future] = []  # replies in request order (pipelining)
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.fresh = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._mark_used()

    def _mark_used(self) -> None:
        if self.fresh:
            self.fresh = False
            self.server.first_request(self)

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        while self.buffer and not self.closing:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self._fail(400, "request headers too large")
                return
            head = self.buffer[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._fail(400, "malformed request line")
                return
            headers: dict[str, str] = {}
            length_text, content_type, connection, chunked = "0", "", "", False
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    continue
                name, value = name.strip(), value.strip()
                headers[name] = value
                if name[:1] in "cCtT":  # the headers the server itself reads
                    lname = name.lower()
                    if lname == "content-length":
                        length_text = value
                    elif lname == "content-type":
                        content_type = value
                    elif lname == "connection":
                        connection = value.lower()
                    elif lname == "transfer-encoding":
                        chunked = value.lower() == "chunked"
            rest = self.buffer[head_end + 4:]
            if chunked:
                parsed = _dechunk(rest, self.server.max_body_size)
                if parsed is None:
                    return  # wait for more data
                if parsed == "too large":
                    self._fail(413, f"request body exceeds the limit of {self.server.max_body_size} bytes")
                    return
                body, used = parsed  # type: ignore[misc]
            else:
                try:
                    length = int(length_text or 0)
                except ValueError:
                    self._fail(400, "invalid Content-Length")
                    return
                if length > self.server.max_body_size:
                    self._fail(413, f"request body of {length} bytes exceeds the limit of "
                                    f"{self.server.max_body_size} bytes")
                    return
                if len(rest) < length:
                    return
                body, used = rest[:length], length
            self.buffer = rest[used:]
            keep_alive = connection != "close" and version == "HTTP/1.1"
            request = Request(method, target, headers, body)
            request.content_type = content_type
            self._dispatch(request, keep_alive)

    def _dispatch(self, request: Request, keep_alive: bool) -> None:
        server = self.server
        if self.fresh:
            self._mark_used()
        if not keep_alive:
            self.closing = True
        reply = server.intercept(request)
        if reply is None and not self.pending and server.can_run_inline():
            reply = server.run_inline(server.app, request)  # the common case: no task, no future
        if reply is not None and not self.pending:
            if self.transport is not None:
                status, content_type, headers, body = reply
                self.transport.write(render(status, content_type, headers, body, keep_alive))
                if not keep_alive:
                    self.transport.close()
            return
        future: asyncio.Future
        if reply is not None:
            future = asyncio.get_event_loop().create_future()
            future.set_result(reply)
        else:
            future = asyncio.ensure_future(server.handle(request))
        self.pending.append(future)
        if len(self.pending) == 1:
            future.add_done_callback(self._flush)

    def _flush(self, _: Any = None) -> None:
        while self.pending and self.pending[0].done():
            future = self.pending.pop(0)
            if self.transport is None:
                return
            status, content_type, headers, body = future.result()
            last = not self.pending and self.closing
            self.transport.write(render(status, content_type, headers, body, keep_alive=not last))
            if last:
                self.transport.close()
                return
        if self.pending:
            self.pending[0].add_done_callback(self._flush)

    def _fail(self, status: int, message: str) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.write(render(status, "text/plain", {}, message.encode(), keep_alive=False))
            self.transport.close()


def _dechunk(data: bytes, limit: int) -> Any:
    body, pos = b"", 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(data[pos:line_end].split(b";")[0], 16)
        except ValueError:
            return (b"", len(data))
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n", pos)
            return None if trailer_end < 0 else (body, trailer_end + 2)
        if len(data) < pos + size + 2:
            return None
        body += data[pos:pos + size]
        if len(body) > limit:
            return "too large"
        pos += size + 2


class HttpServer:
    """Serves ``app`` on a listening socket; ``intercept`` answers internal paths first."""

    def __init__(self, app: App, max_body_size: int = 32 * 1024 * 1024, availability_timeout: float = 10.0,
                 intercept: Callable[[Request], Reply | None] | None = None) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.availability_timeout = availability_timeout
        self.intercept = intercept or (lambda request: None)
        self.connections: set[HttpProtocol] = set()
        self.worker: HandlerThread | None = None
        self.in_flight = 0
        self.fresh = 0  # accepted connections that have not sent a request yet
        self._accepting = False
        self._closed = False
        self._gate: AcceptGate | None = None
        self._worker_free = True
        self._waiting: collections.deque = collections.deque()
        self._slow = 0.0  # decaying maximum of event durations (seconds)

    async def start(self, sock: Any, gate: "AcceptGate | None" = None) -> None:
        """Serve connections from the listening ``sock`` (shared by worker processes via ``gate``)."""
        self._loop = asyncio.get_running_loop()
        self.worker = self.worker or HandlerThread(self._loop)
        self._sock, self._gate = sock, gate
        self._set_accepting(True)
        if gate is not None:
            self._tick = self._loop.call_later(GATE_TICK, self._gate_tick)

    def _accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fresh += 1
        self._update()
        asyncio.ensure_future(self._loop.connect_accepted_socket(lambda: HttpProtocol(self), conn))

    def _set_accepting(self, on: bool) -> None:
        if on and not self._accepting:
            self._loop.add_reader(self._sock.fileno(), self._accept)
        elif not on and self._accepting:
            self._loop.remove_reader(self._sock.fileno())
        self._accepting = on

    def _update(self) -> None:
        """Idle workers take new connections; a busy one only when every worker is busy."""
        if self._gate is None or self._closed:
            return
        busy = bool(self.in_flight or self.fresh)
        self._gate.set_busy(busy)
        self._set_accepting(not busy or self._gate.all_busy())

    def _gate_tick(self) -> None:
        if self._closed:
            return
        self._update()
        self._tick = self._loop.call_later(GATE_TICK, self._gate_tick)

    def first_request(self, protocol: "HttpProtocol") -> None:
        if self.fresh:
            self.fresh -= 1

    async def handle(self, request: Request) -> Reply:
        """Answer one request; 503 when the worker stays busy past ``availability_timeout``."""
        return await self.run(self.app, request, busy_reply=_busy())

    def can_run_inline(self) -> bool:
        """The worker is free, nobody waits for it and events are fast: run the next one now."""
        return self._worker_free and not self._waiting and self._slow < INLINE_LIMIT

    def run_inline(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``run`` for the case ``can_run_inline`` allows, without a task or a future."""
        self.in_flight += 1
        self._worker_free = False
        if self._gate is not None:
            self._update()
        started = time.perf_counter()
        try:
            return fn(arg)
        finally:
            elapsed = time.perf_counter() - started
            self._slow = elapsed if elapsed > self._slow else 0.9 * self._slow + 0.1 * elapsed
            self._worker_free = True
            self.in_flight -= 1
            if self._gate is not None:
                self._update()

    async def run(self, fn: Callable[[Any], Any], arg: Any, busy_reply: Any = None) -> Any:
        """Run ``fn(arg)`` on this worker, one event at a time.

        Fast events run inline on the loop (no thread hand-over); once events are slow (by a
        moving average) they run on the handler thread so that waiting requests can time out.
        """
        self.in_flight += 1
        if self._gate is not None:
            self._update()
        try:
            if not self._worker_free or self._waiting:
                waiter = asyncio.get_running_loop().create_future()
                self._waiting.append(waiter)
                try:
                    await asyncio.wait_for(waiter, self.availability_timeout)
                except asyncio.TimeoutError:
                    if waiter in self._waiting:
                        self._waiting.remove(waiter)
                    if busy_reply is not None:
                        return busy_reply
                    await self._wait_free()
            self._worker_free = False
            started = time.perf_counter()
            try:
                if self._slow < INLINE_LIMIT:
                    return fn(arg)
                return await self.worker.submit(fn, arg)  # type: ignore[union-attr]
            finally:
                elapsed = time.perf_counter() - started
                self._slow = elapsed if elapsed > self._slow else 0.9 * self._slow + 0.1 * elapsed
                self._worker_free = True
                while self._waiting:
                    waiter = self._waiting.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        break
        finally:
            self.in_flight -= 1
            if self._gate is not None:
                self._update()

    async def _wait_free(self) -> None:
        while not self._worker_free:
            await asyncio.sleep(0.005)

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``drain_timeout``), close."""
        self._closed = True
        self._set_accepting(False)
        deadline = time.monotonic() + drain_timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.transport is not None and not connection.pending:
                connection.transport.close()
        if self.worker is not None:
            self.worker.stop()


def _busy() -> Reply:
    return (503, "application/json", {"Retry-After": "1"}, b'{"error": "all workers are busy, retry later"}')


class AcceptGate:
    """One busy flag per worker process in shared memory (created before the workers fork)."""

    def __init__(self, workers: int) -> None:
        self.flags = mmap.mmap(-1, workers)
        self.index = 0

    def for_worker(self, index: int) -> "AcceptGate":
        self.index = index
        return self

    def set_busy(self, busy: bool) -> None:
        self.flags[self.index] = 1 if busy else 0

    def all_busy(self) -> bool:
        return self.flags.find(b"\x00") < 0
