"""Steps that call HTTP services: ``RemoteStep`` (one request per event) and
``BatchHttpRequests`` (one request per element of a list body, run concurrently).

Both use httpx (imported on first use). A 5xx answer or a connection failure/timeout is retried
``retries`` times with exponential backoff; what still fails raises ``RemoteStepError`` naming
the method, URL and status, so the graph's error handler sees it. A 4xx answer fails at once.
"""
from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from typing import Any, Callable

from ..errors import GraphpackError
from ..runtime.deps import require
from ..runtime.paths import get_in, update_in
from .utils import StepToDict

DEFAULT_RETRIES = 6
DEFAULT_BACKOFF = 1.0
DEFAULT_TIMEOUT = 30.0
MAX_BACKOFF_SLEEP = 10.0
EVENT_ID_HEADERS = ("graphpack-event-id", "mlrun-event-id")
EVENT_PATH_HEADERS = ("graphpack-event-path", "mlrun-event-path")


class RemoteStepError(RuntimeError):
    """A remote call failed: ``url``, ``method`` and ``status_code`` (None for no answer)."""

    def __init__(self, message: str, url: str, method: str, status_code: int | None = None) -> None:
        self.url = url
        self.method = method
        self.status_code = status_code
        super().__init__(message)


class RemoteTimeoutError(RemoteStepError, TimeoutError):
    """The remote service did not answer in time (after the retries)."""


class RemoteConnectionError(RemoteStepError, ConnectionError):
    """The remote service could not be reached (after the retries)."""


class _HttpCaller(StepToDict):
    """What both remote steps share: client, URL resolution, retries and error messages."""

    def __init__(
        self,
        url: str | None,
        method: str | None,
        headers: dict | None,
        url_expression: str | None,
        body_expression: str | None,
        return_json: bool,
        input_path: str | None,
        result_path: str | None,
        retries: int | None,
        backoff_factor: float | None,
        timeout: float | None,
        context: Any,
        name: str | None,
    ) -> None:
        self.url = url or ""
        self.method = method
        self.headers = dict(headers or {})
        self.url_expression = url_expression
        self.body_expression = body_expression
        self.return_json = return_json
        self.input_path = input_path
        self.result_path = result_path
        self.retries = retries  # as given (to_dict); None means DEFAULT_RETRIES
        self.backoff_factor = DEFAULT_BACKOFF if backoff_factor is None else float(backoff_factor)
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.context = context
        self.name = name or type(self).__name__
        self._url_fn = _compile(url_expression, ("event", "endpoint"), "url_expression")
        self._body_fn = _compile(body_expression, ("event",), "body_expression")
        self._client: Any = None
        self._lock = threading.Lock()
        self._resolved = False

    def post_init(self, mode: str = "sync") -> None:
        self._resolve_endpoint()

    def _resolve_endpoint(self) -> None:
        if self._resolved:
            return
        if self.url and "://" not in self.url:
            getter = getattr(self.context, "get_remote_endpoint", None)
            if getter is None:
                raise GraphpackError(
                    f"{self.name}: url {self.url!r} is not a URL and there is no context to resolve it"
                )
            self.url = getter(self.url)
        self._resolved = True

    def client(self) -> Any:
        """The shared httpx client (created on first use)."""
        with self._lock:
            if self._client is None:
                httpx = require("httpx", "httpx", f"step {type(self).__name__}")
                self._client = httpx.Client(timeout=self.timeout, follow_redirects=True)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def request(self, method: str, url: str, body: Any, headers: dict) -> Any:
        """Send one request with retries; the decoded answer, or RemoteStepError."""
        httpx = require("httpx", "httpx", f"step {type(self).__name__}")

        kwargs: dict[str, Any] = {"headers": dict(headers)}
        if method != "GET" and body is not None:
            if isinstance(body, (bytes, bytearray, str)):
                kwargs["content"] = body
            else:
                kwargs["content"] = json.dumps(body, default=str).encode()
                kwargs["headers"].setdefault("Content-Type", "application/json")
        client = self.client()
        attempt = 0
        while True:
            attempt += 1
            failure: str
            status: int | None = None
            error: type[RemoteStepError] = RemoteStepError
            try:
                response = client.request(method, url, **kwargs)
            except httpx.TimeoutException:
                failure, error = f"timed out after {self.timeout:g}s", RemoteTimeoutError
            except httpx.TransportError as exc:
                failure, error = f"failed to connect: {type(exc).__name__}: {exc}", RemoteConnectionError
            else:
                status = response.status_code
                if status < 400:
                    return self._decode(method, url, response)
                failure = f"returned status {status}: {_snippet(response.text)}"
                if status < 500:
                    raise RemoteStepError(f"{self.name}: {method} {url} {failure}", url, method, status)
            if attempt > (DEFAULT_RETRIES if self.retries is None else int(self.retries)):
                tries = f" ({attempt} tries)" if attempt > 1 else ""
                raise error(f"{self.name}: {method} {url} {failure}{tries}", url, method, status)
            time.sleep(min(self.backoff_factor * (2 ** (attempt - 1)), MAX_BACKOFF_SLEEP))

    def _decode(self, method: str, url: str, response: Any) -> Any:
        if not self.return_json:
            return response.content
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteStepError(
                f"{self.name}: {method} {url} returned a body that is not JSON: {_snippet(response.text)}",
                url, method, response.status_code,
            ) from None

    def _event_headers(self, event: Any) -> dict:
        headers = dict(self.headers)
        for name in EVENT_ID_HEADERS:
            headers.setdefault(name, str(event.id))
        path = getattr(event, "path", "/") or "/"
        if path != "/":
            for name in EVENT_PATH_HEADERS:
                headers.setdefault(name, path)
        return headers


class RemoteStep(_HttpCaller):
    """Send the event body to ``url`` and use the answer as the new body.

    ``subpath`` is appended to the URL (``"$path"`` appends the event path); ``method`` defaults
    to the event's method, else POST. A ``url`` without ``://`` is a function name resolved with
    ``context.get_remote_endpoint``. ``url_expression`` (``event`` = body, ``endpoint`` = url) and
    ``body_expression`` compute the URL and the body per event.
    """

    def __init__(
        self,
        url: str | None = None,
        subpath: str | None = None,
        method: str | None = None,
        headers: dict | None = None,
        url_expression: str | None = None,
        body_expression: str | None = None,
        return_json: bool = True,
        input_path: str | None = None,
        result_path: str | None = None,
        max_in_flight: int | None = None,
        retries: int | None = DEFAULT_RETRIES,
        backoff_factor: float | None = None,
        timeout: float | None = None,
        context: Any = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not url and not url_expression:
            raise GraphpackError("RemoteStep needs a url or a url_expression")
        super().__init__(
            url, method, headers, url_expression, body_expression, return_json,
            input_path, result_path, retries, backoff_factor, timeout, context, name,
        )
        self.subpath = subpath
        self.max_in_flight = max_in_flight
        self.kwargs = kwargs  # extra arguments, kept for to_dict()

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the remote URL for this event; the answer becomes the body (or lands at result_path)."""
        self._resolve_endpoint()
        body = get_in(event.body, self.input_path) if self.input_path else event.body
        method = (self.method or getattr(event, "method", None) or "POST").upper()
        url = self._url_fn(body, self.url) if self._url_fn else self.url
        if self.subpath:
            extra = (getattr(event, "path", "") or "") if self.subpath == "$path" else self.subpath
            if extra.strip("/"):
                url = url.rstrip("/") + "/" + extra.lstrip("/")
        if self._body_fn:
            body = self._body_fn(body)
        answer = self.request(method, url, body, self._event_headers(event))
        event.body = update_in(event.body, self.result_path, answer) if self.result_path else answer
        return event


class BatchHttpRequests(_HttpCaller):
    """Send one request per element of a list body, concurrently (``max_in_flight`` at once);
    the answers replace the body as a list in input order."""

    def __init__(
        self,
        url: str | None = None,
        subpath: str | None = None,
        method: str | None = None,
        headers: dict | None = None,
        url_expression: str | None = None,
        body_expression: str | None = None,
        return_json: bool = True,
        input_path: str | None = None,
        result_path: str | None = None,
        retries: int | None = None,
        backoff_factor: float | None = None,
        timeout: float | None = None,
        max_in_flight: int | None = None,
        context: Any = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if url and url_expression:
            raise GraphpackError("BatchHttpRequests: set either url or url_expression, not both")
        if not url and not url_expression:
            raise GraphpackError("BatchHttpRequests needs a url or a url_expression")
        super().__init__(
            url, method, headers, url_expression, body_expression, return_json,
            input_path, result_path, retries, backoff_factor, timeout, context, name,
        )
        self.subpath = subpath
        self.max_in_flight = int(max_in_flight or 8)
        self.kwargs = kwargs  # extra arguments, kept for to_dict()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one request per element; the list of answers becomes the body (or its result_path)."""
        self._resolve_endpoint()
        items = get_in(event.body, self.input_path) if self.input_path else event.body
        if not isinstance(items, list):
            raise GraphpackError(
                f"{self.name}: expected a list body (one request per element), got {type(items).__name__}"
            )
        method = (self.method or "POST").upper()
        headers = self._event_headers(event)

        def call(item: Any) -> Any:
            url = self._url_fn(item, self.url) if self._url_fn else self.url
            if self.subpath:
                url = url.rstrip("/") + "/" + self.subpath.lstrip("/")
            body = self._body_fn(item) if self._body_fn else item
            return self.request(method, url, body, headers)

        if len(items) <= 1:
            answers = [call(item) for item in items]
        else:
            with self._lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.max_in_flight, thread_name_prefix=f"{self.name}-http"
                    )
            futures = [self._pool.submit(call, item) for item in items]
            answers = [f.result() for f in futures]
        event.body = update_in(event.body, self.result_path, answers) if self.result_path else answers
        return event

    def close(self) -> None:
        super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _compile(expression: str | Callable | None, args: tuple[str, ...], what: str) -> Callable | None:
    if expression is None or callable(expression):
        return expression
    try:
        return eval(f"lambda {', '.join(args)}: {expression}", {}, {})  # noqa: S307 - graph code
    except SyntaxError as exc:
        raise GraphpackError(f"{what} {expression!r} is not a valid expression: {exc}") from None


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = ["RemoteStep", "BatchHttpRequests", "RemoteStepError", "RemoteTimeoutError", "RemoteConnectionError"]
