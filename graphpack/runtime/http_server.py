"""The processor's http trigger: an asyncio HTTP/1.1 server (connections in http_connection.py).

The event loop does the I/O; each worker process runs events one at a time, as a Nuclio
worker does: fast events inline on the loop, slow ones on a handler thread so that the loop
stays free to answer a request that cannot get the worker within ``availability_timeout``
seconds with 503 and ``Retry-After``. Worker processes share one listening socket; an
``AcceptGate`` lets an idle worker take new connections first. When accept() fails for lack of
a resource (EMFILE at the file-descriptor limit) the worker pauses accepting with a growing
back-off and logs once per interval.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import queue
import socket
import sys
import threading
import time
from typing import Any, Callable

from .http_connection import HttpProtocol
from .http_wire import Request

__all__ = ["AcceptGate", "HttpServer", "HandlerThread", "Request"]

_clock = time.perf_counter
GATE_TICK = 0.02  # how often a busy worker rechecks whether every worker is busy
INLINE_LIMIT = 0.002  # events faster than this run inline on the event loop
ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause after accept() fails (EMFILE, ENFILE, ...)
ACCEPT_LOG_INTERVAL = 10.0  # seconds between two log lines about failing accept() calls
#: accept() errors that say the process or system is out of a resource: pause accepting
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Reply = tuple  # (status, content_type, headers, body bytes)
App = Callable[[Request], "Reply | concurrent.futures.Future"]  # a future: sent when done, the worker moves on


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


class HttpServer:
    """Serves ``app`` on a listening socket; ``internal`` answers its paths (``/__health``) first
    (a handler there that gives None leaves the request to ``app``)."""

    def __init__(self, app: App, max_body_size: int = 32 * 1024 * 1024, availability_timeout: float = 10.0,
                 internal: dict[str, Callable[[Request], Reply | None]] | None = None,
                 log: Callable[[str], Any] | None = None) -> None:
        self.app = app
        self.log = log or _stderr
        self.max_body_size = max_body_size
        self.availability_timeout = availability_timeout
        self.internal = dict(internal or {})
        self.connections: set[HttpProtocol] = set()
        self.worker: HandlerThread | None = None
        self.in_flight = 0
        self.busy_rejections = 0  # requests answered 503 because the worker stayed busy
        self.on_reply: Callable[[Reply], Any] | None = None  # called with every answer sent (metrics)
        self.fresh = 0  # accepted connections that have not sent a request yet
        self._accepting = False
        self._closed = False
        self._gate: AcceptGate | None = None
        self._worker_free = True
        self._waiting: collections.deque = collections.deque()
        self._slow = 0.0  # moving average of event durations (seconds): one preempted event does
        # not move the next ones to the handler thread, an event of 10 * INLINE_LIMIT or more does
        self._backoff = 0.0  # current pause after a failed accept(); 0 when accepting normally
        self._resume: asyncio.TimerHandle | None = None
        self._accept_errors = 0  # failed accept() calls not logged yet
        self._accept_logged = 0.0

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
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                self._pause_accepting(exc)
            return  # ECONNABORTED and the like: that client is gone
        self._backoff = 0.0
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fresh += 1
        self._update()
        asyncio.ensure_future(self._loop.connect_accepted_socket(lambda: HttpProtocol(self), conn))

    def _pause_accepting(self, exc: OSError) -> None:
        """Stop accepting for a growing pause; one log line per ``ACCEPT_LOG_INTERVAL``."""
        self._accept_errors += 1
        now = time.monotonic()
        if now - self._accept_logged >= ACCEPT_LOG_INTERVAL:
            self.log(f"http: accept() failed {self._accept_errors} time(s) since the last report: "
                     f"{exc.strerror}; pausing new connections (in flight: {len(self.connections)})")
            self._accept_errors, self._accept_logged = 0, now
        first, longest = ACCEPT_BACKOFF
        self._backoff = min(longest, self._backoff * 2) if self._backoff else first
        self._set_accepting(False)
        self._resume = self._loop.call_later(self._backoff, self._end_pause)

    def _end_pause(self) -> None:
        self._resume = None
        if self._closed:
            return
        if self._gate is None:
            self._set_accepting(True)
        else:
            self._update()

    def _set_accepting(self, on: bool) -> None:
        if on and self._resume is not None:
            return  # paused after a failed accept()
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
        reply = await self.run(self.app, request, busy_reply=_busy())
        if isinstance(reply, concurrent.futures.Future):  # sent once the event's writes are durable
            return await asyncio.wrap_future(reply)
        return reply

    def run_now(self, request: Request) -> Any:
        """The app's reply to ``request``, run at once on the loop (no task, no future) when the
        worker is free, nobody waits for it and events are fast; else None (``handle`` it)."""
        if not self._worker_free or self._waiting or self._slow >= INLINE_LIMIT:
            return None
        self.in_flight += 1
        self._worker_free = False
        gate = self._gate
        if gate is not None:
            self._update()
        started = _clock()
        try:
            return self.app(request)
        finally:
            self._slow += 0.1 * (_clock() - started - self._slow)
            self._worker_free = True
            self.in_flight -= 1
            if gate is not None:
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
                        self.busy_rejections += 1
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
                self._slow += 0.1 * (elapsed - self._slow)
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
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._set_accepting(False)
        deadline = time.monotonic() + drain_timeout
        while (self.in_flight or any(c.pending for c in self.connections)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.transport is not None and not connection.pending:
                connection.transport.close()
        if self.worker is not None:
            self.worker.stop()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _busy() -> Reply:
    return (503, "application/json", {"Retry-After": "1"}, b'{"error": "all workers are busy, retry later"}')


class AcceptGate:
    """One busy flag per worker process in shared memory (created before the workers fork)."""

    def __init__(self, workers: int) -> None:
        import mmap  # here: one worker needs no gate

        self.flags = mmap.mmap(-1, workers)
        self.index = 0

    def for_worker(self, index: int) -> "AcceptGate":
        self.index = index
        return self

    def release(self, index: int) -> None:
        """Mark worker ``index`` idle (it died; its replacement reports for itself)."""
        self.flags[index] = 0

    def set_busy(self, busy: bool) -> None:
        self.flags[self.index] = 1 if busy else 0

    def all_busy(self) -> bool:
        return self.flags.find(b"\x00") < 0
