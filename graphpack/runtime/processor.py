"""graphpack's own processor (``graphpack serve DIR``): runs a built function the way
Nuclio's processor + Python wrapper would, without Nuclio.

It reads ``DIR/function.yaml`` (function_config.py), imports ``spec.handler`` (``module:function``) from DIR,
calls ``init_context(context)`` once per worker and ``handler(context, event)`` per event
with nuclio-sdk-shaped objects (an entry module that defines ``http_app(context)``, as graphpack's
generated ones do, answers HTTP requests through the function it returns instead: the same answers
without those objects), and runs the function's triggers: ``http`` (N worker
processes sharing one socket, 413/503, ``/__health``), ``cron`` (schedule or interval) and
``kafka-cluster`` (one topic, read by graphpack's queue consumer in every worker).
Queue consumers are started by the entry module's ``init_context``, as under Nuclio.
``GET /metrics`` answers the function's Prometheus metrics, all workers aggregated
(:mod:`graphpack.runtime.metrics`; off with ``--no-metrics`` or ``$GRAPHPACK_METRICS=0``, and
then ``/metrics`` reaches the graph like any other path).
SIGTERM (or SIGINT) stops accepting, drains in-flight events, calls the platform's
termination callback (consumers commit their checkpoints) and exits 0.
With several workers a supervisor process forks them and replaces one that dies (SIGKILL,
the OOM killer), logging which worker it was and how it ended.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import importlib
import inspect
import json
import os
import shutil
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import GraphpackError
from . import deps, json_codec, metrics, metrics_export
from .function_config import load_config
from .http_server import AcceptGate, HttpServer, Request
from .logger import Logger
from .nuclio_shim import Context, Event, Platform, Response, TriggerInfo, to_http

if TYPE_CHECKING:
    from .cron import Clock

DEFAULT_PORT = 8080
HEALTH_PATH = "/__health"
RESTART_WINDOW = 2.0  # a worker dying sooner than this after its start is restarted with a growing delay
RESTART_DELAY_MAX = 5.0
RESTARTS_FILE_ENV = "GRAPHPACK_WORKER_RESTARTS_FILE"  # set by the local deploy: `graphpack status` counts its lines


class FunctionHost:
    """One worker: the imported entry module, its context, and how events reach it."""

    def __init__(self, function_dir: Path, config: dict, worker_id: int) -> None:
        self.dir = function_dir
        self.config = config
        self.name = (config.get("metadata") or {}).get("name", function_dir.name)
        self.worker_id = worker_id
        module_name, _, func_name = config["spec"]["handler"].partition(":")
        if str(function_dir) not in sys.path:
            sys.path.insert(0, str(function_dir))
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise GraphpackError(f"function {self.name!r}: cannot import {module_name!r}: "
                                 f"{type(exc).__name__}: {exc}") from exc
        handler = getattr(module, func_name, None)
        if not callable(handler):
            raise GraphpackError(f"function {self.name!r}: {module_name}.{func_name} is not a function")
        self.handler: Callable = handler
        http_app = getattr(module, "http_app", None)
        self._http_app: Callable | None = http_app if callable(http_app) else None
        self.platform = Platform("local")
        self.logger = Logger(f"graphpack.{self.name}")
        self.contexts: dict[str, Context] = {}
        self._init = getattr(module, "init_context", None)
        self._loop: asyncio.AbstractEventLoop | None = None

    def context_for(self, kind: str, name: str) -> Context:
        """Nuclio runs init_context per worker and trigger; so do we (lazily, once each)."""
        key = f"{kind}:{name}"
        if key not in self.contexts:
            context = Context(self.logger, self.platform, self.worker_id, TriggerInfo(kind, name))
            init = self._init
            if init is not None:
                self._call(init, context)
            self.contexts[key] = context
        return self.contexts[key]

    def _call(self, fn: Callable, *args: Any) -> Any:
        out = fn(*args)
        if out.__class__ is not Response and inspect.isawaitable(out):  # an async handler
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            out = self._loop.run_until_complete(out)
        return out

    def invoke(self, context: Context, event: Event) -> Any:
        """The reply tuple, or a future of it (a handler that answers once its writes are durable)."""
        try:
            out = self._call(self.handler, context, event)
            if isinstance(out, concurrent.futures.Future):
                return _later(out, self._failed)
            return to_http(out)
        except Exception as exc:  # noqa: BLE001 - like Nuclio's wrapper, but no traceback to the caller
            return self._failed(exc)

    def http_answerer(self, context: Context, trigger: str) -> Callable[[Request], Any]:
        """What answers the http trigger's requests: the reply tuple (or a future of it) for a
        request, through the entry module's ``http_app`` when it has one, else through ``invoke``."""

        def through_handler(request: Request) -> Any:
            return self.invoke(context, self.http_event(request, trigger))

        if self._http_app is None:
            return through_handler
        direct, failed = self._http_app(context), self._failed

        def answer(request: Request) -> Any:
            try:
                out = direct(request)
            except Exception as exc:  # noqa: BLE001 - as invoke
                return failed(exc)
            if out.__class__ is tuple:
                return out
            return through_handler(request) if out is None else _later(out, failed, _same)

        return answer

    def _failed(self, exc: BaseException) -> tuple:
        self.logger.error(f"handler failed: {type(exc).__name__}: {exc}")
        return 500, "text/plain", {}, f"Exception caught in handler - {type(exc).__name__}: {exc}".encode()

    def http_event(self, request: Request, trigger: str) -> Event:
        headers = request.headers
        content_type = request.content_type
        body: Any = request.body
        if content_type.split(";")[0].strip() == "application/json" and body:
            try:  # nuclio-sdk decodes JSON bodies, keeping the bytes when that fails
                body = json_codec.loads(body)
            except ValueError:
                pass
        return Event(body=body, content_type=content_type, trigger=TriggerInfo("http", trigger),
                     fields=request.query, headers=headers, method=request.method, path=request.path,
                     size=len(request.body), url=request.url)


def _same(reply: tuple) -> tuple:
    return reply


def _later(output: concurrent.futures.Future, failed: Callable[[BaseException], tuple],
           convert: Callable[[Any], tuple] = to_http) -> concurrent.futures.Future:
    """A future of the reply tuple for a future of the handler's output."""
    reply: concurrent.futures.Future = concurrent.futures.Future()

    def done(future: concurrent.futures.Future) -> None:
        try:
            reply.set_result(convert(future.result()))
        except Exception as exc:  # noqa: BLE001 - answered 500, as a handler that raised
            reply.set_result(failed(exc))

    output.add_done_callback(done)
    return reply


def _triggers(config: dict) -> dict:
    return dict(config["spec"].get("triggers") or {})


def _http_trigger(config: dict) -> tuple[str, dict]:
    for name, trigger in _triggers(config).items():
        if (trigger or {}).get("kind") == "http":
            return name, trigger
    return "http", {"kind": "http", "attributes": {}}


def _apply_env(config: dict, function_dir: Path) -> None:
    for item in config["spec"].get("env") or []:
        if isinstance(item, dict) and "value" in item and item.get("name"):
            os.environ.setdefault(item["name"], str(item["value"]))
    os.environ["GRAPHPACK_FUNCTION_DIR"] = str(function_dir)
    _consume_kafka_trigger(config)


def _consume_kafka_trigger(config: dict) -> None:
    """A ``kafka-cluster`` trigger (a child reading a Kafka queue) is consumed by graphpack's own
    queue consumer, started by the entry module's init_context from these variables. Not under
    Knative (``K_SERVICE`` is set in its containers): there the KafkaSource delivers the records."""
    if os.environ.get("K_SERVICE"):
        return
    for trigger in _triggers(config).values():
        attributes = (trigger or {}).get("attributes") or {}
        if (trigger or {}).get("kind") in ("kafka-cluster", "kafka") and not os.environ.get("GRAPHPACK_QUEUE_CONSUMER"):
            brokers, topics = attributes.get("brokers") or [], attributes.get("topics") or []
            if len(topics) != 1:
                raise GraphpackError(f"kafka trigger: graphpack serve consumes one topic per trigger, got {topics!r}")
            os.environ["GRAPHPACK_QUEUE_CONSUMER"] = f"kafka://{','.join(brokers)}/{topics[0]}"
            os.environ["GRAPHPACK_CONSUMER_GROUP"] = str(attributes.get("consumerGroup") or "graphpack")


async def _cron_loop(host: FunctionHost, server: HttpServer, name: str, trigger: dict, stop: asyncio.Event,
                     clock: Clock | None = None) -> None:
    from .cron import run_schedule, trigger_schedule  # here: most functions have no cron trigger

    attributes = trigger.get("attributes") or {}
    event_spec = attributes.get("event") or {}
    body = event_spec.get("body", "")
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    headers = dict(event_spec.get("headers") or {})
    schedule = trigger_schedule(attributes)
    context = host.context_for("cron", name)

    async def fire(_: datetime) -> None:
        data = body.encode() if isinstance(body, str) else body
        event = Event(body=data, content_type=headers.get("Content-Type", ""), headers=headers,
                      trigger=TriggerInfo("cron", name), method="POST", path="/", size=len(data or b""))
        await server.run(lambda ev: host.invoke(context, ev), event)

    await run_schedule(schedule, fire, stop, clock)


def _record_worker_restart(worker_id: int) -> None:
    """One line per replaced worker in ``$GRAPHPACK_WORKER_RESTARTS_FILE`` (when set)."""
    path = os.environ.get(RESTARTS_FILE_ENV)
    if path:
        try:
            with open(path, "a") as handle:
                handle.write(f"{time.time():.3f} worker {worker_id}\n")
        except OSError:
            pass


async def _stop_when_orphaned(supervisor: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died drains and exits as on SIGTERM: no orphan keeps serving
    the port (the deploy's keeper starts a new supervisor on it)."""
    while os.getppid() == supervisor:
        await asyncio.sleep(0.2)
    stop.set()


async def _worker_main(function_dir: Path, config: dict, sock: socket.socket, worker_id: int,
                       run_cron: bool, gate: AcceptGate | None = None, supervisor: int | None = None) -> None:
    recorder = metrics.enable(_function_name(config, function_dir)) if metrics.wanted() else None
    host = FunctionHost(function_dir, config, worker_id)
    trigger_name, http = _http_trigger(config)
    attributes = http.get("attributes") or {}
    context = host.context_for("http", trigger_name)
    ready_at = time.time()
    metrics_dir = os.environ.get(metrics_export.DIR_ENV, "")

    def health(request: Request) -> tuple:
        failed = deps.failures()
        body = json.dumps({"status": "failed" if failed else "ready", "function": host.name,
                           "worker": worker_id, "pid": os.getpid(), "since": ready_at,
                           **({"errors": failed} if failed else {})}).encode()
        return 503 if failed else 200, "application/json", _INTERNAL, body

    def exposition(request: Request) -> tuple | None:
        if recorder is None or request.method not in ("GET", "HEAD"):
            return None  # the graph's
        body = metrics_export.exposition(recorder, metrics_dir, metrics_export.supervisor_pids())
        return 200, metrics_export.CONTENT_TYPE, _INTERNAL, body

    internal: dict = {HEALTH_PATH: health}
    if recorder is not None:
        internal[metrics_export.METRICS_PATH] = exposition

    server = HttpServer(
        host.http_answerer(context, trigger_name),
        max_body_size=int(attributes.get("maxRequestBodySize") or 32 * 1024 * 1024),
        availability_timeout=float(http.get("workerAvailabilityTimeoutMilliseconds") or 10000) / 1000,
        internal=internal,
        log=host.logger.warn,
    )
    await server.start(sock, gate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if recorder is not None:
        _count_http(recorder, server)
        _snapshot_every(loop, recorder, metrics_dir, stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = []
    if supervisor is not None:
        tasks.append(asyncio.ensure_future(_stop_when_orphaned(supervisor, stop)))
    if run_cron:
        for name, trigger in _triggers(config).items():
            if (trigger or {}).get("kind") == "cron":
                tasks.append(asyncio.ensure_future(_cron_loop(host, server, name, trigger, stop)))
    host.logger.info(f"worker {worker_id} ready", function=host.name, pid=os.getpid())
    gc.freeze()  # what init built lives as long as the worker: collections no longer walk it (p99)
    await stop.wait()
    host.logger.info(f"worker {worker_id} stopping: draining in-flight events")
    for task in tasks:
        task.cancel()
    await server.stop()
    if server.worker is not None:
        server.worker.thread.join(timeout=30)
    host.platform.terminate()
    if recorder is not None and metrics_dir:
        metrics_export.write_snapshot(recorder, metrics_dir)
    host.logger.info(f"worker {worker_id} stopped")


_INTERNAL: dict = {}  # the headers of the processor's own answers (health, metrics): not counted


def _count_http(recorder: metrics.Recorder, server: HttpServer) -> None:
    """Count the function's HTTP answers by status (not the processor's own), busy rejections
    and requests in flight."""
    codes = recorder.codes

    def on_reply(reply: tuple) -> None:  # Recorder.reply inlined (once per request)
        if reply[2] is not _INTERNAL:
            status = reply[0]
            codes[status] = codes.get(status, 0) + 1

    server.on_reply = on_reply
    recorder.in_flight = lambda: server.in_flight

    def busy() -> None:
        recorder.busy = server.busy_rejections

    recorder.collectors.append(busy)


def _snapshot_every(loop: asyncio.AbstractEventLoop, recorder: metrics.Recorder, directory: str,
                    stop: asyncio.Event) -> None:
    """Write this worker's metrics snapshot every ``metrics_export.INTERVAL`` seconds."""
    if not directory:
        return

    def tick() -> None:
        if stop.is_set():
            return
        metrics_export.write_snapshot(recorder, directory)
        loop.call_later(metrics_export.INTERVAL, tick)

    loop.call_later(metrics_export.INTERVAL, tick)


def _function_name(config: dict, function_dir: Path) -> str:
    return str((config.get("metadata") or {}).get("name") or function_dir.name)


def _run_loop(main: Any) -> None:
    """Run the worker on uvloop when it is installed (the ``serve`` extra), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GraphpackError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(function_dir: str | Path, port: int | None = None, workers: int | None = None,
          host: str = "127.0.0.1") -> int:
    """Run the function until SIGTERM; returns the exit code."""
    function_dir = Path(function_dir).resolve()
    config = load_config(function_dir)
    _apply_env(config, function_dir)
    _, http = _http_trigger(config)
    attributes = http.get("attributes") or {}
    port = int(port or os.environ.get("PORT") or attributes.get("port") or DEFAULT_PORT)
    count = int(workers or http.get("numWorkers") or http.get("maxWorkers") or 1)
    sys.setswitchinterval(0.001)  # the I/O loop and the handler thread hand over quickly
    sock = listen(host, port)
    own_dir = metrics.wanted() and not os.environ.get(metrics_export.DIR_ENV)
    if metrics.wanted():
        _prepare_metrics(config, function_dir, port)
    try:
        return _serve(function_dir, config, sock, host, port, count)
    finally:
        if own_dir and metrics.wanted():  # the default directory goes with the function; a chosen one stays
            shutil.rmtree(os.environ[metrics_export.DIR_ENV], ignore_errors=True)


def _serve(function_dir: Path, config: dict, sock: socket.socket, host: str, port: int, count: int) -> int:
    print(f"graphpack serve: {config.get('metadata', {}).get('name', function_dir.name)} on http://{host}:{port} "
          f"({count} worker{'s' if count > 1 else ''})", file=sys.stderr, flush=True)
    if count == 1:
        _run_loop(_worker_main(function_dir, config, sock, 0, run_cron=True))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # already draining: a second SIGTERM changes nothing
        return 0
    return _supervise(function_dir, config, sock, count)


def _prepare_metrics(config: dict, function_dir: Path, port: int) -> None:
    """Empty the function's metrics directory and tell the workers where it is; metrics are
    turned off (with one line on stderr) when it cannot be written: the function runs anyway."""
    name = _function_name(config, function_dir)
    directory = Path(os.environ.get(metrics_export.DIR_ENV) or metrics_export.default_dir(name, port))
    try:
        if not os.environ.get(metrics_export.DIR_ENV):  # the default place: left over by killed functions too
            metrics_export.prune(directory.parent)
        metrics_export.prepare(directory)
    except OSError as exc:
        print(f"graphpack serve: metrics off: cannot use the metrics directory {str(directory)!r}: "
              f"{exc.strerror or exc} (set ${metrics_export.DIR_ENV})", file=sys.stderr, flush=True)
        os.environ[metrics.ENV] = "0"
        return
    os.environ[metrics_export.DIR_ENV] = str(directory)
    os.environ[metrics_export.SUPERVISOR_ENV] = str(os.getpid())


def _fork_worker(function_dir: Path, config: dict, sock: socket.socket, worker_id: int, gate: AcceptGate) -> int:
    """Start worker ``worker_id`` in a child process on the shared socket; its pid."""
    supervisor = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's handlers
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _run_loop(_worker_main(function_dir, config, sock, worker_id, run_cron=worker_id == 0,
                               gate=gate.for_worker(worker_id), supervisor=supervisor))
    except BaseException as exc:  # noqa: BLE001 - report and exit non-zero
        if deps.missing_in(exc) is None:  # a missing package was logged once, where it was found
            print(f"worker {worker_id} failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    os._exit(code)


def _death(code: int) -> str:
    """How a child ended, from its wait status."""
    exit_code = os.waitstatus_to_exitcode(code)
    if exit_code < 0:
        return f"was killed by signal {-exit_code} ({signal.Signals(-exit_code).name})"
    return f"exited with status {exit_code}"


def _supervise(function_dir: Path, config: dict, sock: socket.socket, count: int) -> int:
    """Fork one process per worker on the shared socket, forward SIGTERM/SIGINT, and replace a
    worker that dies (killed by a signal such as SIGKILL or the OOM killer, or exiting unasked).

    A worker that exits non-zero (its function failed to load) stops the whole function: every
    replacement would fail the same way. Replacements of a worker that keeps dying within
    ``RESTART_WINDOW`` seconds of its start wait longer each time (up to ``RESTART_DELAY_MAX``).
    """
    logger = Logger("graphpack.serve")
    gate = AcceptGate(count)
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker id, start time)
    delays = [0.0] * count
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in list(children):
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker_id in range(count):
        children[_fork_worker(function_dir, config, sock, worker_id, gate)] = (worker_id, time.monotonic())
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        worker_id, started = children.pop(pid)
        if stopping:
            status = status or int(os.waitstatus_to_exitcode(code) != 0)
            continue
        if os.waitstatus_to_exitcode(code) > 0:
            logger.error(f"worker {worker_id} (pid {pid}) {_death(code)}: stopping the function")
            status = 1
            forward(signal.SIGTERM, None)
            continue
        gate.release(worker_id)
        quick = time.monotonic() - started < RESTART_WINDOW
        delays[worker_id] = min(RESTART_DELAY_MAX, max(0.1, delays[worker_id] * 2)) if quick else 0.0
        logger.warn(f"worker {worker_id} (pid {pid}) {_death(code)}: starting a new worker {worker_id}"
                    + (f" in {delays[worker_id]:.1f} s" if delays[worker_id] else ""))
        _record_worker_restart(worker_id)
        time.sleep(delays[worker_id])
        if not stopping:
            children[_fork_worker(function_dir, config, sock, worker_id, gate)] = (worker_id, time.monotonic())
    sock.close()
    return status
