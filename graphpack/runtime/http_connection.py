"""One HTTP/1.1 client connection: bytes in, parsed by httptools (llhttp), requests to the
server, responses out in request order.

Rules (RFC 9112): a request whose framing is ambiguous or broken (negative, non-numeric or
duplicate Content-Length, Content-Length with Transfer-Encoding, a bad chunk, Transfer-Encoding
on HTTP/1.0) gets 400 and the connection closes; a header section over ``MAX_HEADER_BYTES``
gets 431, a body over the server's limit 413 naming the limit, an unknown transfer coding 501,
an HTTP version other than 1.x 505. HEAD gets headers only, pipelined requests are answered in
order, ``Connection: close`` and HTTP/1.0 close after the answer, ``Expect: 100-continue`` is
answered before the body is read, and a client that half-closes after its request still gets
its answer. After an error answer the connection lingers briefly, discarding input, so that the
client reads the answer instead of a reset. A client that pipelines without reading its answers
is not read from until they drain (``MAX_PIPELINE`` pending, or the transport's write buffer full).
"""
from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Any

import httptools

from .http_wire import CONTINUE, Request, render, split_target

if TYPE_CHECKING:
    from .http_server import HttpServer

MAX_HEADER_BYTES = 64 * 1024
LINGER = 2.0  # seconds an erroring connection keeps reading (and dropping) input before it closes
MAX_PIPELINE = 32  # unanswered requests per connection before it stops reading (back-pressure)
TEXT = "text/plain; charset=utf-8"
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")}


class Reject(Exception):
    """Raised in a parser callback: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Stop(Exception):
    """Raised in a parser callback: the connection reads no further requests."""


def _size(fields: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in fields)


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: "HttpServer") -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque = collections.deque()  # (future, keep_alive, head), in order
        self.closing = False  # no further requests are read
        self.lingering = False
        self.fresh = True
        self.continue_due = False
        self.write_paused = False  # the transport's write buffer is full
        self.reading = True
        self.keep_alive = True
        self.head = False
        self._start()

    def _start(self) -> None:
        """Ready for the next request (set at the end of the previous one: the parser's
        message-begin callback, one more Python call per request, is not used)."""
        self.in_head = True  # until the end of the next request's headers
        self.head_seen = 0  # bytes received while in_head (bounds what the parser buffers)
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []  # header fields (trailer fields after the body)
        self.head_size = 0
        self.body: list[bytes] | None = None  # the body's parts, when it has any
        self.body_size = 0
        self.content_type = ""
        self.request: Request | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._mark_used()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._flow()

    def _flow(self) -> None:
        """Read from the client only while its answers drain."""
        want = not self.write_paused and len(self.pending) < MAX_PIPELINE
        if want != self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _mark_used(self) -> None:
        if self.fresh:
            self.fresh = False
            self.server.first_request(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after an error, or after the last request: input is dropped
        if self.in_head:
            self.head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Reject):
                self.fail(cause.status, cause.message)
            elif not isinstance(cause, _Stop):
                self._broken(cause)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0]:] if exc.args and isinstance(exc.args[0], int) else b"")
        except httptools.HttpParserError as exc:
            if not self.closing:  # else: bytes after the last request (Connection: close) are dropped
                self.fail(400, f"malformed request: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug of ours must not kill the worker or leak a traceback
            self._broken(exc)
        else:
            if self.in_head:
                if self.head_seen > MAX_HEADER_BYTES:
                    self.fail(431, f"request header section exceeds the limit of {MAX_HEADER_BYTES} bytes")
            elif self.raw and self.head_size + _size(self.raw) > MAX_HEADER_BYTES:  # trailer fields
                self.fail(431, f"request header section exceeds the limit of {MAX_HEADER_BYTES} bytes")

    def _broken(self, exc: BaseException | None) -> None:
        self.server.log(f"http: request handling failed: {type(exc).__name__}: {exc}")
        if not self.closing:
            self.fail(500, "internal error")
        elif self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close."""
        self.closing = True
        return bool(self.pending)  # True keeps the connection open for the pending answers

    # -- parser callbacks -----------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        if self.closing:
            raise _Stop()  # a request after the last one (Connection: close, half-closed, an error)
        self.url += url
        if len(self.url) > MAX_HEADER_BYTES:
            raise Reject(431, f"request target exceeds the limit of {MAX_HEADER_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))  # read at the end of the head (one Python call per header less)

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        raw, self.raw = self.raw, []
        headers: dict[str, str] = {}
        size = 0
        for name, value in raw:
            size += len(name) + len(value) + 4
            if size > MAX_HEADER_BYTES:
                raise Reject(431, f"request header section exceeds the limit of {MAX_HEADER_BYTES} bytes")
            key = name.decode("latin-1")
            text = headers[key] = value.decode("latin-1").strip()
            if key[:1] in "cCeEtT":  # the headers the server itself reads
                lower = key.lower()
                if lower == "content-type":
                    self.content_type = text
                elif lower != "content-length" or not text.isdigit() or int(text) > self.server.max_body_size:
                    self._read_header(lower, text)
        size += len(self.url)
        if size > MAX_HEADER_BYTES:
            raise Reject(431, f"request header section exceeds the limit of {MAX_HEADER_BYTES} bytes")
        self.head_size = size
        version = parser.get_http_version()
        if version != "1.1":
            if version[:2] != "1.":
                raise Reject(505, f"HTTP/{version} is not supported (HTTP/1.1 is)")
            if version == "1.0" and any(k.lower() == "transfer-encoding" for k in headers):
                raise Reject(400, "malformed request: Transfer-Encoding in an HTTP/1.0 request")
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        url = self.url
        try:
            path, query = split_target(url)
        except ValueError as exc:
            raise Reject(400, f"malformed request: {exc}") from None
        self.keep_alive = version == "1.1" and parser.should_keep_alive()
        self.head = method == "HEAD"
        self.request = Request(method, path, query, headers, b"", url.decode("latin-1"), self.content_type)
        if self.continue_due:
            self.continue_due = version == "1.1"
            self._send_continue()

    def _read_header(self, lower: str, text: str) -> None:
        """Check and note a header the server itself reads (``lower``: its lower-case name; the
        common cases, a Content-Type or a Content-Length within the limit, are read inline)."""
        if lower == "content-length" and text.isdigit() and int(text) > self.server.max_body_size:
            raise self._too_large(int(text))
        elif lower == "transfer-encoding" and text.lower() != "chunked":
            if text.lower().rpartition(",")[2].strip() == "chunked":
                raise Reject(501, f"transfer coding not supported: {text}")
            raise Reject(400, f"malformed request: the body's length is unknown (Transfer-Encoding: {text})")
        elif lower == "expect":
            if text.lower() != "100-continue":
                raise Reject(417, f"expectation not supported: {text}")
            self.continue_due = True

    def on_body(self, body: bytes) -> None:
        self.continue_due = False  # the client sent its body without waiting
        size = self.body_size = self.body_size + len(body)
        if size > self.server.max_body_size:
            raise self._too_large(None)
        if self.body is None:
            self.body = [body]
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        request = self.request
        if request is None:
            return
        self.continue_due = False
        body = self.body
        if body is not None:
            request.body = body[0] if len(body) == 1 else b"".join(body)
        if self.raw:  # trailer fields join the header fields, within the same limit
            if self.head_size + _size(self.raw) > MAX_HEADER_BYTES:
                raise Reject(431, f"request header section exceeds the limit of {MAX_HEADER_BYTES} bytes")
            for name, value in self.raw:
                request.headers[name.decode("latin-1")] = value.decode("latin-1").strip()
        keep_alive, head = self.keep_alive, self.head
        self._start()
        self._dispatch(request, keep_alive, head)

    def _too_large(self, length: int | None) -> Reject:
        limit = self.server.max_body_size
        size = f"of {length} bytes " if length is not None else ""
        return Reject(413, f"request body {size}exceeds the limit of {limit} bytes")

    def _send_continue(self) -> None:
        if self.continue_due and not self.in_head and not self.pending and self.transport is not None:
            self.continue_due = False
            self.transport.write(CONTINUE)

    def _upgrade(self, rest: bytes) -> None:
        """A protocol upgrade (``Upgrade: h2c``) is declined: the request was answered as HTTP/1.1."""
        self.parser = httptools.HttpRequestParser(self)
        self.in_head, self.head_seen = True, 0
        if rest:
            self.data_received(rest)

    # -- answers --------------------------------------------------------------------------------
    def _dispatch(self, request: Request, keep_alive: bool, head: bool) -> None:
        server = self.server
        if self.fresh:
            self._mark_used()
        if not keep_alive:
            self.closing = True
        reply: Any = None  # a reply tuple, a concurrent future of one, or None (not run yet)
        internal = server.internal.get(request.path)
        if internal is not None:
            reply = internal(request)
        if reply is None and not self.pending:
            reply = server.run_now(request)  # the common case: no task, no future; None if it cannot
        if reply.__class__ is tuple:
            if not self.pending:
                self._write(reply, keep_alive, head)
                return
        elif reply is not None:  # a future: sent once the event's writes are durable
            self._queue(asyncio.wrap_future(reply), keep_alive, head)
            return
        future: asyncio.Future
        if reply is not None:
            future = asyncio.get_event_loop().create_future()
            future.set_result(reply)
        else:
            future = asyncio.ensure_future(server.handle(request))
        self._queue(future, keep_alive, head)

    def _queue(self, future: asyncio.Future, keep_alive: bool, head: bool) -> None:
        self.pending.append((future, keep_alive, head))
        if len(self.pending) == 1:
            future.add_done_callback(self._flush)
        elif len(self.pending) >= MAX_PIPELINE:
            self._flow()

    def _write(self, reply: tuple, keep_alive: bool, head: bool) -> None:
        transport = self.transport
        if transport is None or self.lingering or transport.is_closing():
            return
        status, content_type, headers, body = reply
        transport.write(render(status, content_type, headers, body, keep_alive, head))
        if self.server.on_reply is not None:  # metrics (graphpack.runtime.metrics): answers by status
            self.server.on_reply(reply)
        if not keep_alive:
            if status >= 400:
                self._linger()
            else:
                transport.close()

    def _flush(self, _: Any = None) -> None:
        pending = self.pending
        while pending and pending[0][0].done():
            future, keep_alive, head = pending.popleft()
            try:
                reply = future.result()
            except asyncio.CancelledError:  # the worker is shutting down
                reply = (503, TEXT, {}, b"the function is stopping")
            except Exception as exc:  # noqa: BLE001 - a last resort: the app maps its own errors
                self.server.log(f"http: request handling failed: {type(exc).__name__}: {exc}")
                reply = (500, TEXT, {}, b"internal error")
            last = not keep_alive or (not pending and self.closing)
            self._write(reply, not last, head)
            if last:
                pending.clear()
                return
        if pending:
            pending[0][0].add_done_callback(self._flush)
        else:
            self._send_continue()
        if not self.reading:
            self._flow()

    def fail(self, status: int, message: str) -> None:
        """Answer ``status`` after the requests before it, and close the connection."""
        self.closing = True
        self.continue_due = False
        reply: tuple = (status, TEXT, {}, message.encode("utf-8", errors="replace"))
        if not self.pending:
            self._write(reply, False, False)
            return
        future = asyncio.get_event_loop().create_future()
        future.set_result(reply)
        self._queue(future, False, False)

    def _linger(self) -> None:
        """Half-close after an error answer and drop input for a while, so the client sees the
        answer rather than a reset (closing with unread input makes the kernel send RST)."""
        transport = self.transport
        if transport is None or self.lingering:
            return
        self.lingering = True
        try:
            transport.write_eof()
        except (OSError, RuntimeError, NotImplementedError):
            transport.close()
            return
        asyncio.get_event_loop().call_later(LINGER, transport.close)
