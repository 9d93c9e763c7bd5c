"""``V2ModelServer``: the base class of a model served with the V2 inference protocol.

Subclass it, implement ``load()`` (usually ``self.model = pickle.load(open(self.get_model(".pkl")[0], "rb"))``)
and ``predict(request)``; optionally ``preprocess``, ``validate``, ``postprocess``, ``explain`` and
custom ``op_<name>(event)`` operations.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Any

from ..errors import BadRequestError, GraphpackError, HTTPError, NotReadyError
from ..runtime.deps import missing_in
from ..runtime.paths import get_in, update_in
from ._utils import decode_body, is_get, utc_timestamp
from .utils import StepToDict

INFER_OPS = ("infer", "predict")
DICT_OPS = ("infer_dict", "predict_dict")
MODEL_SPEC_FILES = ("model_spec.json", "model_spec.yaml", "model_spec.yml")
_STREAM_WAIT_SECONDS = 250.0
_OPS = {"/infer": "infer", "/predict": "predict", "/explain": "explain", "/ready": "ready", "/": "", "": ""}


def split_version(name: str | None) -> tuple[str | None, str]:
    """``"m:v1"`` -> ``("m", "v1")``; ``"m"`` -> ``("m", "")``."""
    if name and ":" in name:
        model, version = name.split(":", 1)
        return model, version
    return name, ""


def model_op_from_path(path: str | None) -> str:
    """The operation named by an event path: ``"/infer"`` -> ``"infer"``; a full V2 path
    ``/v2/models/m[/versions/v]/op`` -> ``"op"`` (``""`` when the path names no operation)."""
    op = (path or "").strip("/")
    if "/" not in op:
        return op
    parts = op.split("/")
    if len(parts) >= 2 and parts[0].startswith("v") and parts[0][1:].isdigit() and parts[1] == "models":
        rest = parts[3:]
        if len(rest) >= 2 and rest[0] == "versions":
            rest = rest[2:]
        return "/".join(rest)
    return op


class V2ModelServer(StepToDict):
    """A model step answering V2 requests (infer, predict, explain, ready, metadata, ``op_*``).

    ``name`` may carry a version (``"m:v1"``). Extra keyword arguments are model parameters
    read with ``get_param``. Passing ``model=`` makes the server ready without ``load()``.
    """

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        model_path: str | None = None,
        model: Any = None,
        protocol: str | None = None,
        input_path: str | None = None,
        result_path: str | None = None,
        **class_args: Any,
    ) -> None:
        self.name, self.version = split_version(name)
        self.name = self.name or type(self).__name__
        self.context = context if context is not None else _default_context()
        self.model_path = model_path
        self.protocol = protocol or "v2"
        self.input_path = input_path
        self.result_path = result_path
        self._params = class_args
        self.model_spec: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        self.error = ""
        self.model = model
        self.ready = model is not None
        self._loaded = threading.Event()
        if self.ready:
            self._loaded.set()
        self._load_thread: threading.Thread | None = None
        cls = type(self)  # which no-op hooks a subclass overrides (skipped on the hot path if not)
        self._hooks = (cls.preprocess is not V2ModelServer.preprocess,
                       cls.postprocess is not V2ModelServer.postprocess)
        self._plain = self.protocol == "v2" and not any(self._hooks) and all(
            getattr(cls, m) is getattr(V2ModelServer, m) for m in ("validate", "_infer"))

    # ----- lifecycle -------------------------------------------------------------------

    def post_init(self, mode: str = "sync") -> None:
        """Load the model once: in this thread, or in the background when ``mode``
        (or the ``load_mode`` class argument) is ``"async"``."""
        if self.ready:
            return
        load_mode = self._params.get("load_mode") or mode or "sync"
        if load_mode == "async":
            self._load_thread = threading.Thread(
                target=self._load_and_update_state, name=f"load-{self.name}", daemon=True
            )
            self._load_thread.start()
        else:
            self._load_and_update_state(raise_errors=True)

    def _load_and_update_state(self, raise_errors: bool = False) -> None:
        try:
            self.load()
        except Exception as exc:  # noqa: BLE001 - remembered and reported per request
            missing = missing_in(exc)  # a missing package: logged once where it was found
            self.error = str(missing) if missing is not None else f"{type(exc).__name__}: {exc}"
            self._loaded.set()
            if missing is None:
                self.context.logger.error(f"failed to load model {self.name}: {self.error}")
            if raise_errors:
                if missing is not None:
                    raise missing from None
                raise RuntimeError(f"failed to load model {self.name}: {self.error}") from exc
            return
        self.ready = True
        self._loaded.set()
        self.context.logger.info(f"model {self.name} was loaded")

    def load(self) -> None:
        """Load the model (override; ``get_model(suffix)`` fetches the file)."""

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until loading ended (successfully or not); True when the model is ready."""
        self._loaded.wait(timeout)
        return self.ready

    def _check_readiness(self, event: Any) -> None:
        if self.ready:
            return
        if not self.error and _is_stream_trigger(event):
            self._loaded.wait(float(self.get_param("ready_timeout", _STREAM_WAIT_SECONDS)))
            if self.ready:
                return
        if self.error:
            raise RuntimeError(f"model {self.name} failed to load: {self.error}")
        raise NotReadyError(f"model {self.name} is not ready")

    # ----- parameters and model files --------------------------------------------------

    def get_param(self, key: str, default: Any = None) -> Any:
        """A class argument of this model, else the graph parameter ``key``, else ``default``."""
        if key in self._params:
            return self._params[key]
        getter = getattr(self.context, "get_param", None)
        return getter(key, default) if getter else default

    def set_metric(self, name: str, value: Any) -> None:
        self.metrics[name] = value

    def get_model(self, suffix: str = "") -> tuple[str, dict[str, Any]]:
        """Fetch the model and return ``(local_file, extra_data)``.

        ``model_path`` may be a file, a directory or an ``s3://`` / ``http(s)://`` URL
        (downloaded to a temp dir first). In a directory the model file is the one named by
        ``model_file`` in a ``model_spec.json`` / ``.yaml`` there, else ``model<suffix>``, else
        the only file ending with ``suffix``; the other files become ``extra_data`` resources
        keyed by name. The spec (flat, or MLRun's ``{"spec": {...}}`` layout) also fills
        ``model_spec`` (inputs, outputs) and adds its ``parameters`` to the model's params.
        """
        if not self.model_path:
            raise GraphpackError(f"model {self.name} has no model_path to load from")
        from ..runtime.resources import get_store_resource

        local = get_store_resource(self.model_path).local()
        if not os.path.isdir(local):
            if suffix and not local.endswith(suffix):
                raise GraphpackError(
                    f"model {self.name}: {self.model_path} does not end with {suffix!r}"
                )
            return local, {}
        files = sorted(
            os.path.relpath(os.path.join(root, f), local).replace(os.sep, "/")
            for root, _, names in os.walk(local)
            for f in names
        )
        spec = self._read_model_spec(local, files)
        chosen = self._choose_model_file(files, suffix, spec.get("model_file"))
        extra = {
            f: get_store_resource(os.path.join(local, f), use_cache=False)
            for f in files
            if f != chosen and f not in MODEL_SPEC_FILES
        }
        return os.path.join(local, chosen), extra

    def _choose_model_file(self, files: list[str], suffix: str, named: str | None) -> str:
        if named:
            if named not in files:
                raise GraphpackError(
                    f"model {self.name}: model_spec names model_file {named!r}, "
                    f"which is not in {self.model_path}"
                )
            return named
        if suffix and f"model{suffix}" in files:
            return f"model{suffix}"
        models = [f for f in files if f not in MODEL_SPEC_FILES]
        candidates = [f for f in models if f.endswith(suffix)] if suffix else models
        if len(candidates) == 1:
            return candidates[0]
        found = ", ".join(files) or "no files"
        what = f"one file ending with {suffix!r}" if suffix else "exactly one model file"
        raise GraphpackError(f"model {self.name}: expected {what} in {self.model_path}, found {found}")

    def _read_model_spec(self, folder: str, files: list[str]) -> dict[str, Any]:
        for name in MODEL_SPEC_FILES:
            if name not in files:
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                if name.endswith(".json"):
                    spec = json.load(f)
                else:
                    import yaml

                    spec = yaml.safe_load(f)
            if not isinstance(spec, dict):
                raise GraphpackError(f"model {self.name}: {name} in {self.model_path} is not a mapping")
            if isinstance(spec.get("spec"), dict):  # MLRun's artifact layout
                spec = spec["spec"]
            self.model_spec = spec
            for key, value in (spec.get("parameters") or {}).items():
                self._params.setdefault(key, value)
            return spec
        return {}

    # ----- request handling -------------------------------------------------------------

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Answer one event (the runtime calls this); returns the event with the response body."""
        body = event.body
        if body.__class__ is not dict:
            body = decode_body(body, getattr(event, "content_type", None))
        request = get_in(body, self.input_path) if self.input_path else body
        op = _OPS.get(event.path)
        if op is None:
            op = model_op_from_path(event.path)
        if request.__class__ is dict or isinstance(request, dict):
            if not op and request.get("operation"):
                op = str(request["operation"])
            request_id = request.get("id") or event.id
        else:
            request_id = event.id
        if op == "infer" and self._plain:
            # the common case, inlined: a ready model, no pre/post-process or validate override
            if not self.ready:
                self._check_readiness(event)
            if request.__class__ is not dict or request.get("inputs").__class__ is not list:
                self.validate(request, op)  # raises the 400 naming what is wrong
            answer = {"id": request_id, "model_name": self.name, "outputs": self.predict(request),
                      "timestamp": utc_timestamp()}
            event.body = update_in(body, self.result_path, answer) if self.result_path else answer
            return event
        get = is_get(event)

        if op in INFER_OPS or op in DICT_OPS or (not op and not get):
            response: Any = self._infer(event, request, request_id, op or "infer")
        elif not op and get:
            response = self.get_metadata()
        elif op == "ready" and get:
            self._check_readiness(event)
            response = self.context.Response(
                body=f"Model {self.name} is ready (event_id = {event.id})".encode(),
                content_type="text/plain",
                status_code=200,
            )
        elif op == "explain":
            response = self._explain(event, request, request_id)
        elif op and hasattr(self, "op_" + op.replace("-", "_")):
            self._check_readiness(event)
            event.body = request
            response = getattr(self, "op_" + op.replace("-", "_"))(event)
        else:
            raise BadRequestError(
                f"unknown operation {op!r} for model {self.name} (method {event.method}); "
                "use infer, predict, explain, ready (GET), metadata (GET) or a custom op_<name>"
            )

        event.body = update_in(body, self.result_path, response) if self.result_path else response
        return event

    def _infer(self, event: Any, request: Any, request_id: Any, op: str) -> Any:
        if not self.ready:
            self._check_readiness(event)
        if self._hooks[0]:
            request = self.preprocess(request, op)
        request = self.validate(request, op)
        if op in DICT_OPS:
            request["inputs"] = self._inputs_to_list(request["inputs"])
        response = {"id": request_id, "model_name": self.name, "outputs": self.predict(request),
                    "timestamp": utc_timestamp()}
        return self.postprocess(response) if self._hooks[1] else response

    def _explain(self, event: Any, request: Any, request_id: Any) -> Any:
        self._check_readiness(event)
        request = self.preprocess(request, "explain")
        request = self.validate(request, "explain")
        outputs = self.explain(request)
        response = {"id": request_id, "model_name": self.name, "outputs": outputs}
        return self.postprocess(response)

    def _inputs_to_list(self, inputs: Any) -> list:
        features = [f["name"] if isinstance(f, dict) else f for f in self.model_spec.get("inputs") or []]
        if not features:
            raise BadRequestError(
                f"model {self.name} has no input schema (model_spec inputs) for dict inputs"
            )
        rows = [inputs] if isinstance(inputs, dict) else inputs
        out = []
        for row in rows:
            if not isinstance(row, dict):
                out.append(row)
                continue
            missing = [f for f in features if f not in row]
            if missing:
                raise BadRequestError(f"model {self.name}: input is missing features {missing}")
            out.append([row[f] for f in features])
        return out

    # ----- overridable hooks ------------------------------------------------------------

    def get_metadata(self) -> dict[str, Any]:
        """The model metadata returned for ``GET /v2/models/<name>``."""
        return {
            "name": self.name,
            "inputs": self.model_spec.get("inputs", []),
            "outputs": self.model_spec.get("outputs", []),
        }

    def preprocess(self, request: Any, operation: str) -> Any:
        """Change the request before validation and prediction (override)."""
        return request

    def validate(self, request: Any, operation: str) -> Any:
        """Check the request; the V2 protocol needs an ``inputs`` list."""
        if self.protocol == "v2":
            if not isinstance(request, dict) or "inputs" not in request:
                raise BadRequestError(f'Expected key "inputs" in request body (model {self.name})')
            if not isinstance(request["inputs"], list):
                raise BadRequestError(f'Expected "inputs" to be a list (model {self.name})')
        return request

    def predict(self, request: dict) -> Any:
        """Return the outputs for ``request["inputs"]`` (override)."""
        raise HTTPError(501, f"model {self.name} does not implement predict")

    def explain(self, request: dict) -> Any:
        """Return an explanation for ``request["inputs"]`` (override)."""
        raise HTTPError(501, f"model {self.name} does not implement explain")

    def postprocess(self, response: dict) -> Any:
        """Change the response before it is returned (override)."""
        return response

    def __repr__(self) -> str:
        version = f":{self.version}" if self.version else ""
        return f"{type(self).__name__}({self.name}{version}, ready={self.ready})"


def _is_stream_trigger(event: Any) -> bool:
    trigger = getattr(event, "trigger", None)
    kind = getattr(trigger, "kind", trigger) if trigger is not None else ""
    return bool(kind) and kind not in ("http", "")


def _default_context() -> Any:
    from ..runtime.context import GraphContext

    return GraphContext()


__all__ = ["V2ModelServer", "split_version", "model_op_from_path"]
