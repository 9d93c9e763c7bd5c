"""Routers over model routes: ``BaseModelRouter`` and ``ModelRouter`` (the V2 paths).

Paths served by ``ModelRouter`` (prefix ``/v2/models``)::

    POST /v2/models/<name>[/versions/<v>]/<infer|predict|explain|op>   -> that route
    GET  /v2/models/                                                   -> {"models": [...]}
    GET  /v2/models/<name>[/versions/<v>]                              -> model metadata
    GET  /v2/models/<name>[/versions/<v>]/ready                        -> readiness
    GET  /v2/health, GET /                                             -> server health

``{"model": name}`` (and ``{"operation": op}``) in the body select the route and operation too.
"""
from __future__ import annotations

import io
import re
from typing import Any

from ..errors import BadRequestError
from ..runtime.paths import get_in, update_in
from ._utils import decode_body, is_get
from .utils import StepToDict

_PROTOCOL_PATH = re.compile(r"^/(v\d+)(/|$)")
_PATH_CACHE_SIZE = 4096


class BaseModelRouter(StepToDict):
    """Common request handling for routers: body parsing, input/result paths, health checks.

    Subclasses implement ``_handle_event(event) -> event`` and may override ``preprocess`` /
    ``postprocess`` (both receive and return the event).
    """

    _step_kind = "router"  # to_dict(): a router step

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        routes: dict | None = None,
        protocol: str | None = None,
        url_prefix: str | None = None,
        health_prefix: str | None = None,
        input_path: str | None = None,
        result_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.context = context if context is not None else _default_context()
        self.name = name or type(self).__name__
        self.routes: dict[str, Any] = routes if routes is not None else {}
        self.protocol = protocol or "v2"
        self.url_prefix = (url_prefix or f"/{self.protocol}/models").rstrip("/")
        self.health_prefix = (health_prefix or f"/{self.protocol}/health").rstrip("/")
        self.input_path = input_path
        self.result_path = result_path
        self.kwargs = kwargs
        self._paths: dict[str, tuple] = {}
        self._fast = False

    def post_init(self, mode: str = "sync") -> None:
        """Called by the runtime once the routes are set (override when needed)."""

    # ----- hooks ------------------------------------------------------------------------

    def parse_event(self, event: Any) -> Any:
        """The request body as a Python value (JSON decoded; image bytes wrapped as inputs)."""
        body = event.body
        if is_get(event) or not body:
            return body if not isinstance(body, (bytes, bytearray, str)) else decode_body(body)
        ctype = (getattr(event, "content_type", None) or "").lower()
        if isinstance(body, (bytes, bytearray)) and ctype.startswith("image/"):
            return {"inputs": [io.BytesIO(bytes(body))]}
        if isinstance(body, (bytes, bytearray, str)):
            try:
                return decode_body(body)
            except BadRequestError:
                raise BadRequestError(
                    "Unrecognized request format: the body is not JSON "
                    f"(content type {ctype or 'unset'})"
                ) from None
        if isinstance(body, dict) and body.get("data_url"):
            from ..runtime.resources import get_store_resource

            data = get_store_resource(str(body["data_url"]), use_cache=False).get()
            body = {k: v for k, v in body.items() if k != "data_url"}
            body["inputs"] = [io.BytesIO(data)]
        return body

    def preprocess(self, event: Any) -> Any:
        """Change the event before routing (override)."""
        return event

    def postprocess(self, event: Any) -> Any:
        """Change the event after routing (override)."""
        return event

    # ----- request flow -----------------------------------------------------------------

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Handle one event (the runtime calls this)."""
        body = event.body
        if body.__class__ is not dict or "data_url" in body or is_get(event):
            body = self.parse_event(event)
        original_body = body
        if self.input_path:
            body = get_in(body, self.input_path)
        event.body = body
        event = self.preprocess(event)
        answer = self._pre_handle_event(event)
        if answer is not None:
            event.body = answer
            event.terminated = True
        else:
            event = self.postprocess(self._handle_event(event))
        if self.result_path:
            event.body = update_in(original_body, self.result_path, event.body)
        return event

    def _pre_handle_event(self, event: Any) -> Any:
        """An answer for health checks (or None to route the event); rejects foreign paths."""
        kind = self.classify(event.path or "/")
        if kind[0] == "models" or kind[0] == "root" and not is_get(event):
            return None
        if kind[0] == "health" or kind[0] == "root":
            if is_get(event):
                return {"name": type(self).__name__, "version": self.protocol, "extensions": []}
            kind = self._foreign(event.path)
        raise BadRequestError(kind[1])

    def classify(self, path: str) -> tuple:
        """What a path is: ``("root",)``, ``("health",)``, ``("bad", message)`` or
        ``("models", model_key_or_None, op, error_or_None)`` (cached per path)."""
        hit = self._paths.get(path)
        if hit is None:
            hit = self._classify(path)
            if len(self._paths) < _PATH_CACHE_SIZE:
                self._paths[path] = hit
        return hit

    def _classify(self, path: str) -> tuple:
        if path == "/":
            return ("root",)
        if _under(path, self.url_prefix):
            parts = [p for p in path[len(self.url_prefix):].split("/") if p]
            if not parts:
                return ("models", None, "", None)
            model, rest = parts[0], parts[1:]
            if rest and rest[0] == "versions":
                if len(rest) < 2:
                    return ("models", model, "", f"path {path} names no version after /versions")
                model = f"{model}:{rest[1]}"
                rest = rest[2:]
            return ("models", model, "/".join(rest), None)
        if _under(path, self.health_prefix):
            return ("health",)
        return self._foreign(path)

    def _foreign(self, path: str) -> tuple:
        match = _PROTOCOL_PATH.match(path)
        if match and match.group(1) != self.protocol:
            return ("bad", f"unsupported protocol version {match.group(1)} in path {path}: "
                           f"this router serves {self.protocol} ({self.url_prefix}/...)")
        return ("bad", f"illegal path prefix {path}, must start with {self.url_prefix}")

    def _handle_event(self, event: Any) -> Any:
        raise NotImplementedError

    def _run_route(self, key: str, event: Any, op: str) -> Any:
        """Run route ``key`` with the event path set to its operation; restores the path."""
        route = self.routes.get(key)
        if route is None:
            raise BadRequestError(
                f"model {key!r} does not exist, available models: {' | '.join(self.routes) or 'none'}"
            )
        original_path = event.path
        event.path = _OP_PATHS.get(op) or op
        try:
            result = route.run(event)
        finally:
            event.path = original_path  # error handlers and later steps see the request's path
        if result is None:
            return event
        result.path = original_path
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, routes={list(self.routes)})"


class ModelRouter(BaseModelRouter):
    """Routes V2 requests to the model named in the path (or ``body["model"]``)."""

    def select(self, event: Any) -> tuple[str | None, str]:
        """``(route key, operation)`` for the event; a None key means "list the models"."""
        path = event.path or "/"
        kind = self.classify(path)
        if kind[0] == "models":
            if kind[3]:
                raise BadRequestError(kind[3])
            model, op = kind[1], kind[2]
        else:
            model, op = None, ""
        body = event.body
        if body.__class__ is dict and body:
            if model is None and body.get("model"):
                model = str(body["model"])
            if body.get("operation"):
                op = str(body["operation"])
        else:
            body = None
        get = is_get(event)
        if model is None:
            if path != "/" and get:
                return None, ""
            if len(self.routes) == 1:
                model = next(iter(self.routes))
            elif path != "/" and not body:
                return None, ""
            else:
                raise BadRequestError(
                    f"no model selected: name it in the path ({self.url_prefix}/<model>/infer) "
                    f"or in the body ({{\"model\": ...}}); available models: "
                    f"{' | '.join(self.routes) or 'none'}"
                )
        if not op and not get:
            op = "infer"
        return model, op

    def post_init(self, mode: str = "sync") -> None:
        cls = type(self)
        # the fast path skips hooks, so it is only taken when none of them is customised
        self._fast = not (self.input_path or self.result_path) and all(
            getattr(cls, hook) is getattr(ModelRouter, hook)
            for hook in ("do_event", "parse_event", "preprocess", "postprocess", "_pre_handle_event",
                         "_handle_event", "select", "classify", "_run_route")
        )

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Handle one event; a POST of a JSON dict to a known model path takes a short cut."""
        body = event.body
        if (
            self._fast
            and body.__class__ is dict
            and event.method == "POST"
            and "model" not in body
            and "operation" not in body
            and "data_url" not in body
        ):
            path = event.path
            kind = self._paths.get(path)
            if kind is not None and kind[0] == "models" and kind[1] is not None and kind[3] is None:
                route = self.routes.get(kind[1])
                if route is not None:
                    op = kind[2] or "infer"
                    event.path = _OP_PATHS.get(op) or op
                    try:
                        result = route.run(event)
                    finally:
                        event.path = path
                    if result is None:
                        return event
                    result.path = path
                    return result
        return super().do_event(event)

    def _handle_event(self, event: Any) -> Any:
        key, op = self.select(event)
        if key is None:
            event.body = {"models": list(self.routes)}
            event.terminated = True
            return event
        return self._run_route(key, event, op)


# the path a route sees: the operation alone, as MLRun's router rewrites it ("infer", not "/infer")
_OP_PATHS = {"": "/", "infer": "infer", "predict": "predict", "explain": "explain", "ready": "ready"}


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _default_context() -> Any:
    from ..runtime.context import GraphContext

    return GraphContext()


__all__ = ["BaseModelRouter", "ModelRouter"]


def __getattr__(name: str) -> Any:
    """MLRun's ``mlrun.serving.routers`` also holds the ensembles and parallel runs."""
    if name == "VotingEnsemble":
        from .ensemble import VotingEnsemble

        return VotingEnsemble
    if name in ("ParallelRun", "ParallelRunnerModes"):
        from . import parallel

        return getattr(parallel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
