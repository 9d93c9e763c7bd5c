"""MLRun's Nuclio hook (``mlrun.runtimes.nuclio_init_hook``), so that functions MLRun generated run
on graphpack's runtime with ``mlrun`` replaced by ``graphpack`` in their entry module::

    from graphpack.runtimes import nuclio_init_hook

    def init_context(context):
        nuclio_init_hook(context, globals(), "serving_v2")

    def handler(context, event):
        return context.graphpack_handler(context, event)   # or context.mlrun_handler

The serving spec is read as MLRun delivers it: the mounted ``/tmp/mlrun/serving-conf/serving_spec.json``
(plain, or gzip + base64), else the ``SERVING_SPEC_ENV`` environment variable. Fields of MLRun's
spec that graphpack has no use for (model monitoring, tracking, cyclic graphs) are left out;
class names such as ``mlrun.serving.V2ModelServer`` resolve to graphpack's own classes.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Any

from ..errors import GraphpackError

SERVING_SPEC_FILE = "/tmp/mlrun/serving-conf/serving_spec.json"
SERVING_SPEC_ENV = "SERVING_SPEC_ENV"
KINDS = ("serving", "serving_v2")

# the step fields graphpack reads, per kind (anything else in MLRun's spec is dropped)
_TASK = {"kind", "class_name", "class_args", "handler", "after", "function", "full_event", "input_path",
         "result_path", "responder", "comment", "shape", "on_error", "skip_context"}
_FIELDS = {
    "task": _TASK,
    "error_step": _TASK | {"before", "base_step"},
    "router": _TASK | {"routes"},
    "queue": {"kind", "path", "shards", "retention_in_hours", "trigger_args", "after", "function", "comment",
              "shape", "on_error", "full_event", "group", "kafka_brokers", "kafka_producer_options"},
    "flow": {"kind", "steps", "engine", "on_error", "after", "function", "comment"},
}
_ROOT = {"steps", "engine", "on_error", "final_step", "kind", "class_name", "class_args", "routes", "name"}
_SERVER = ("function_uri", "version", "parameters", "graph", "load_mode", "functions", "graph_initializer",
           "error_stream", "secret_sources", "default_content_type", "verbose")


def read_serving_spec() -> dict:
    """MLRun's serving spec: the mounted file, else ``$SERVING_SPEC_ENV``."""
    text = None
    if os.path.isfile(SERVING_SPEC_FILE):
        with open(SERVING_SPEC_FILE) as handle:
            text = handle.read()
    text = text or os.environ.get(SERVING_SPEC_ENV)
    if not text:
        raise GraphpackError(f"no serving spec: neither {SERVING_SPEC_FILE} nor ${SERVING_SPEC_ENV} is set")
    try:
        spec = json.loads(text)
    except ValueError:
        try:  # later MLRun versions store it gzip-compressed and base64-encoded
            spec = json.loads(gzip.decompress(base64.b64decode(text)))
        except (ValueError, OSError) as exc:
            raise GraphpackError(f"the serving spec is neither JSON nor gzip+base64 JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise GraphpackError("the serving spec must be a JSON object")
    return spec


def from_mlrun_spec(spec: dict) -> dict:
    """The part of MLRun's serving spec graphpack's GraphServer takes."""
    out = {key: spec[key] for key in _SERVER if spec.get(key) is not None}
    if isinstance(out.get("graph"), dict):
        out["graph"] = _graph(out["graph"])
    return out


def _graph(graph: dict) -> dict:
    root = {k: v for k, v in graph.items() if k in _ROOT}
    if root.get("kind") == "router":
        return _step(root, _FIELDS["router"] | {"name"})
    root["steps"] = {name: _step(step, _FIELDS.get(step.get("kind", "task"), _TASK))
                     for name, step in (graph.get("steps") or {}).items()}
    return root


def _step(step: dict, fields: set) -> dict:
    out = {k: v for k, v in step.items() if k in fields and v is not None}
    if out.get("class_name") == "":  # MLRun's default router
        del out["class_name"]
    if isinstance(out.get("routes"), dict):
        out["routes"] = {key: _step(route, _TASK) for key, route in out["routes"].items()}
    if isinstance(out.get("steps"), dict):
        out["steps"] = {key: _step(s, _FIELDS.get(s.get("kind", "task"), _TASK)) for key, s in out["steps"].items()}
    if out.get("kind") == "queue":  # MLRun keeps queue options next to the path; graphpack under "options"
        options = {k: out.pop(k) for k in ("full_event", "group", "kafka_brokers", "kafka_producer_options")
                   if k in out}
        if options:
            out["options"] = options
    return out


def nuclio_init_hook(context: Any, data: Any, kind: str) -> None:
    """Build the graph server from MLRun's serving spec and set ``context.mlrun_handler`` (and
    ``context.graphpack_handler``, the same handler under the name a plain text replace gives).

    ``data`` is the entry module's ``globals()``: class and handler names resolve there first.
    ``$SERVING_CURRENT_FUNCTION`` names the child function this one runs (empty for the root).
    """
    if kind not in KINDS:
        raise GraphpackError(f"nuclio_init_hook: kind {kind!r} is not supported; graphpack runs serving "
                             f"functions ({', '.join(KINDS)})")
    from ..handlers import entry

    spec = from_mlrun_spec(read_serving_spec())
    spec["current_function"] = os.environ.get("SERVING_CURRENT_FUNCTION", "")
    server = entry.init_context(context, spec=spec, namespaces=[data] if data is not None else [])
    context.mlrun_handler = entry.handler
    context.graphpack_handler = entry.handler  # the footer after a plain mlrun -> graphpack replace
    context._server = server


__all__ = ["nuclio_init_hook", "read_serving_spec", "from_mlrun_spec"]
