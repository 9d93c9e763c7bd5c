"""Serving functions: a graph plus what it needs to run (code, image, parameters, children)."""
from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphpackError
from .graph.steps import ENGINES, BaseStep, FlowStep, RootFlowStep, RouterStep, TaskStep, _default_name
from .runtime.secrets import normalize_source

TOPOLOGIES = ("router", "flow")
DEFAULT_MODEL_CLASS = "graphpack.serving.V2ModelServer"
_SERVER_FIELDS = ("load_mode", "verbose", "error_stream", "default_content_type")


class FunctionMetadata:
    def __init__(self, name: str = "", project: str = "", tag: str = "", labels: dict | None = None) -> None:
        self.name = name
        self.project = project
        self.tag = tag
        self.labels = dict(labels or {})

    def to_dict(self) -> dict:
        return _compact({"name": self.name, "project": self.project, "tag": self.tag, "labels": self.labels})


class ChildFunction:
    """A child function the graph's ``function=`` steps run in."""

    def __init__(self, name: str, url: str | None = None, image: str | None = None,
                 requirements: list | None = None, kind: str | None = None) -> None:
        self.name = name
        self.url = url
        self.image = image
        self.requirements = list(requirements or [])
        self.kind = kind or "serving"

    def to_dict(self) -> dict:
        return _compact({"name": self.name, "url": self.url, "image": self.image,
                         "requirements": self.requirements, "kind": self.kind})


class FunctionSpec:
    """The fields of ``fn.spec`` (MLRun names)."""

    _fields = ("filename", "handler", "image", "requirements", "parameters", "error_stream",
               "load_mode", "default_class", "default_content_type", "secret_sources", "env",
               "triggers", "resources", "min_replicas", "max_replicas", "build_commands",
               "graph_initializer", "verbose", "track_models")

    def __init__(self) -> None:
        self.graph: BaseStep | None = None
        self.filename: str | None = None
        self.handler: str | None = None
        self.image: str | None = None
        self.requirements: list = []
        self.parameters: dict = {}
        self.error_stream: str | None = None
        self.load_mode: str | None = None
        self.default_class: str = DEFAULT_MODEL_CLASS
        self.default_content_type: str | None = None
        self.secret_sources: list = []
        self.env: dict = {}
        self.triggers: dict = {}
        self.resources: dict = {}
        self.min_replicas: int | None = None
        self.max_replicas: int | None = None
        self.build_commands: list = []
        self.graph_initializer: str | None = None
        self.verbose: bool = False
        self.track_models: bool = False
        self.child_functions: dict[str, ChildFunction] = {}

    def to_dict(self) -> dict:
        out = {field: copy.deepcopy(getattr(self, field)) for field in self._fields}
        out["default_class"] = None if self.default_class == DEFAULT_MODEL_CLASS else self.default_class
        out["child_functions"] = {n: c.to_dict() for n, c in self.child_functions.items()}
        if self.graph is not None:
            out["graph"] = self.graph.to_dict()
        return _compact(out)


class ServingFunction:
    """A serving function (``kind="serving"``), built like MLRun's ServingRuntime."""

    kind = "serving"

    def __init__(self, name: str = "", project: str = "", filename: str | None = None,
                 image: str | None = None, requirements: list | None = None, tag: str = "") -> None:
        self.metadata = FunctionMetadata(name, project, tag)
        self.spec = FunctionSpec()
        self.spec.filename = filename
        self.spec.image = image
        self.spec.requirements = list(requirements or [])
        self._namespace: Any = None  # where class names are looked up when there is no file
        self._deployer: Any = None  # set by project.deploy_function
        self._project: Any = None  # the project that holds this function (project.set_function)
        self._mock_server: Any = None  # set by deploy(mock=True): invoke() is then served in-process
        self._base_dir: str | None = None  # directory relative filenames are read from

    # -- graph ------------------------------------------------------------------------------
    def set_topology(self, topology: str | None = None, class_name: Any = None, engine: str | None = None,
                     exist_ok: bool = False, **class_args: Any) -> BaseStep:
        """Create the graph: ``"router"`` (default) or ``"flow"`` (engine "async" by default).

        A second call fails unless ``exist_ok=True``, which replaces the graph (as in MLRun)."""
        topology = topology or "router"
        if self.spec.graph is not None and not exist_ok:
            raise GraphpackError(f"function {self.metadata.name!r}: the graph topology is already set "
                                 "(pass exist_ok=True to replace it)")
        if topology not in TOPOLOGIES:
            raise GraphpackError(f"function {self.metadata.name!r}: unknown topology {topology!r}, "
                                 f"use one of {', '.join(TOPOLOGIES)}")
        if engine is not None and engine not in ENGINES:
            raise GraphpackError(f"function {self.metadata.name!r}: unknown engine {engine!r}, use 'sync' or 'async'")
        if topology == "router":
            if isinstance(class_name, RouterStep):
                self.spec.graph = class_name
            else:
                if isinstance(class_name, str) and class_name.startswith("*"):
                    class_name = class_name[1:] or None
                router = RouterStep(class_name, class_args)
                # named after its class as in MLRun (reachable at /v2/models/<Name>/...)
                router.name = _default_name(class_name, None) if class_name is not None else "router"
                self.spec.graph = router
        else:
            self.spec.graph = RootFlowStep(engine=engine or "async")
        return self.spec.graph

    @property
    def graph(self) -> BaseStep | None:
        return self.spec.graph

    @property
    def verbose(self) -> bool:
        """``fn.verbose = True`` (MLRun's spelling of ``fn.spec.verbose``): tracebacks in error answers."""
        return self.spec.verbose

    @verbose.setter
    def verbose(self, value: bool) -> None:
        self.spec.verbose = bool(value)

    def add_model(self, key: str, model_path: str | None = None, class_name: Any = None,
                  model_url: str | None = None, handler: str | None = None,
                  router_step: str | None = None, child_function: str | None = None,
                  **class_args: Any) -> TaskStep:
        """Add a model route to the router (the router topology's root or a router in a flow)."""
        graph = self.spec.graph or self.set_topology("router")
        router: RouterStep
        if isinstance(graph, RouterStep):
            router = graph
        else:
            assert isinstance(graph, FlowStep)
            routers = [s for s in graph.steps.values() if isinstance(s, RouterStep)]
            if router_step:
                chosen = graph.steps.get(router_step)
                if not isinstance(chosen, RouterStep):
                    raise GraphpackError(f"add_model: router_step {router_step!r} is not a router step")
                router = chosen
            elif len(routers) == 1:
                router = routers[0]
            elif not routers:
                raise GraphpackError("add_model: the graph has no router step; add one or use router_step=")
            else:
                names = ", ".join(str(r.name) for r in routers)
                raise GraphpackError(f"add_model: the graph has {len(routers)} routers ({names}); set router_step=")
        if model_url:
            return router.add_route(key, class_name="graphpack.serving.RemoteStep", url=model_url,
                                    function=child_function, **class_args)
        if model_path is None and (class_name is None or isinstance(class_name, str)) and handler is None:
            raise GraphpackError(f"add_model {key!r}: model_path or model_url is required")
        if model_path is not None:
            class_args["model_path"] = str(model_path)
        return router.add_route(key, class_name=class_name or self.spec.default_class, handler=handler,
                                function=child_function, **class_args)

    def add_child_function(self, name: str, url: str | None = None, image: str | None = None,
                           requirements: list | None = None, kind: str | None = None) -> ChildFunction:
        """Declare a child function that runs the steps with ``function=name``."""
        if not name:
            raise GraphpackError("add_child_function: a name is required")
        child = ChildFunction(name, str(url) if url is not None else None, image, requirements, kind)
        self.spec.child_functions[name] = child
        return child

    def with_secrets(self, kind: str, source: Any) -> "ServingFunction":
        """Read secrets at run time from ``env`` variable names or a ``file``."""
        self.spec.secret_sources.append(normalize_source(kind, source))
        return self

    def set_env(self, name: str, value: Any) -> "ServingFunction":
        self.spec.env[name] = str(value)
        return self

    def add_trigger(self, name: str, spec: Any) -> "ServingFunction":
        """Add a trigger (CronTrigger, HttpTrigger, V3IOStreamTrigger or a Nuclio trigger dict)."""
        from .triggers import trigger_to_dict

        self.spec.triggers[name] = trigger_to_dict(name, spec)
        return self

    def with_http(self, workers: int | None = 8, port: int | None = None, max_body_size: int | None = None,
                  **attributes: Any) -> "ServingFunction":
        from .triggers import HttpTrigger

        return self.add_trigger("http", HttpTrigger(workers=workers, port=port,
                                                    max_body_size=max_body_size, **attributes))

    # -- running locally --------------------------------------------------------------------
    def namespaces(self, namespace: Any = None, caller_globals: dict | None = None) -> list:
        """Where class and handler names are looked up, the user's code first."""
        spaces: list = []
        if isinstance(namespace, (list, tuple)):
            spaces.extend(namespace)
        elif namespace is not None:
            spaces.append(namespace)
        path = self.code_path()
        if path is not None:
            from .code import load_module

            spaces.append(load_module(path))
        if self._namespace is not None:
            spaces.append(self._namespace)
        if caller_globals is not None:
            spaces.append(caller_globals)
        return spaces

    def code_path(self) -> Path | None:
        if not self.spec.filename:
            return None
        path = Path(self.spec.filename)
        if not path.is_absolute() and self._base_dir:
            path = Path(self._base_dir) / path
        if not path.is_file():
            raise GraphpackError(f"function {self.metadata.name!r}: code file {str(path)!r} does not exist")
        return path

    def serving_spec(self, current_function: str | None = None) -> dict:
        """The spec a GraphServer is built from (the same for the mock and deployed functions)."""
        spec = self.spec
        uri = f"{self.metadata.project}/{self.metadata.name}" if self.metadata.project else self.metadata.name
        return _compact({
            "function_uri": uri,
            "version": "v2",
            "parameters": copy.deepcopy(spec.parameters),
            "graph": spec.graph.to_dict() if spec.graph is not None else None,
            "load_mode": spec.load_mode,
            "functions": {n: f"{uri}-{n}" for n in spec.child_functions},
            "graph_initializer": spec.graph_initializer,
            "error_stream": spec.error_stream,
            "secret_sources": copy.deepcopy(spec.secret_sources),
            "default_content_type": spec.default_content_type,
            "current_function": current_function,
            "verbose": spec.verbose,
        })

    def _get_serving_spec(self) -> str:
        """The serving spec as a JSON string (MLRun's name for :meth:`serving_spec`)."""
        import json

        return json.dumps(self.serving_spec(), default=str)

    def to_mock_server(self, namespace: Any = None, current_function: str | None = "*",
                       track_models: bool = False, workdir: str | None = None, **class_args: Any) -> Any:
        """A GraphServer running the whole graph in-process (``current_function="*"``)."""
        from .graph.validate import validate_graph
        from .runtime.server import GraphServer

        caller = inspect.currentframe().f_back.f_globals  # type: ignore[union-attr]
        # the mock runs every step in-process: undeclared child functions are fine here (as in MLRun)
        validate_graph(self.spec.graph, None if current_function == "*" else list(self.spec.child_functions))
        server = GraphServer.from_dict(self.serving_spec(current_function or ""))
        server.graph = copy.deepcopy(self.spec.graph)
        for key, value in class_args.items():  # server fields (load_mode, verbose...) or parameters
            if key in _SERVER_FIELDS:
                setattr(server, key, value)
            else:
                server.parameters[key] = value
        server.init_states(namespace=namespace, is_mock=True)
        server.init_object(self.namespaces(namespace, caller))
        return server

    def plot(self, filename: str | None = None, format: str | None = None, **graph_attr: Any) -> Any:
        from .graph.plot import plot_graph

        return plot_graph(self.spec.graph, filename=filename, format=format, **graph_attr)

    def build_config(self, function: str | None = None, target: str = "nuclio", **options: Any) -> dict:
        """The Nuclio function.yaml dict of this function (or of its child ``function``)."""
        from .packager import function_configs

        configs = function_configs(self, target=target, **options)
        key = function or self.metadata.name
        if key not in configs:
            raise GraphpackError(f"function {self.metadata.name!r} has no child {key!r} "
                                 f"(functions: {', '.join(configs)})")
        return configs[key]

    def deploy(self, mock: bool | None = None, target: str = "local", **options: Any) -> str:
        """Deploy this function with its children (through its project); ``mock=True`` serves
        ``invoke()`` in-process instead. Returns the address, or ``"Mock"``."""
        from .graph.validate import validate_graph

        if mock:
            self._set_as_mock(True)
            return "Mock"
        validate_graph(self.spec.graph, list(self.spec.child_functions))
        if self._project is None:
            raise GraphpackError(f"function {self.metadata.name!r}: deploy() needs a project; create the "
                                 "function with project.set_function(...) or deploy with mock=True")
        status = self._project.deploy_function(self.metadata.name, target=target, **options)
        return status.url or ""

    def _set_as_mock(self, enable: bool) -> None:
        self._mock_server = self.to_mock_server() if enable else None

    def invoke(self, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, mock: bool | None = None) -> Any:
        """Call this function where it was deployed (``project.deploy_function``), or in-process
        after ``deploy(mock=True)`` / ``graphpack.deploy_function(fn, mock=True)`` (or ``mock=True``)."""
        if mock or (mock is None and self._mock_server is not None):
            if self._mock_server is None:
                self._set_as_mock(True)
            return self._mock_server.test(path, body, method or "", headers)
        self._mock_server = None
        deployer = self._deployer
        if deployer is None:
            raise GraphpackError(f"function {self.metadata.name!r} is not deployed: call project.deploy_function() first")
        result = deployer.invoke(self.metadata.name, path, body, method, headers)
        if not result.ok:
            raise GraphpackError(f"{self.metadata.name} answered {result.status_code}: {result.body}")
        return result.body

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind, "metadata": self.metadata.to_dict(), "spec": self.spec.to_dict()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_dict(cls, data: dict) -> "ServingFunction":
        return function_from_dict(data)

    def __repr__(self) -> str:
        return f"<ServingFunction {self.metadata.name!r}>"


def function_from_dict(data: dict) -> ServingFunction:
    """Rebuild a function from ``fn.to_dict()``."""
    from .runtime.server import graph_from_dict

    if not isinstance(data, dict) or "spec" not in data:
        raise GraphpackError("function dict needs 'metadata' and 'spec'")
    kind = data.get("kind", "serving")
    if kind != "serving":
        raise GraphpackError(f"function kind {kind!r} is not supported (only 'serving')")
    meta = data.get("metadata", {}) or {}
    fn = ServingFunction(meta.get("name", ""), meta.get("project", ""), tag=meta.get("tag", ""))
    fn.metadata.labels = dict(meta.get("labels", {}))
    spec = dict(data["spec"])
    graph = spec.pop("graph", None)
    children = spec.pop("child_functions", {}) or {}
    for field in FunctionSpec._fields:
        if field in spec:
            setattr(fn.spec, field, copy.deepcopy(spec.pop(field)))
    if fn.spec.default_class is None:
        fn.spec.default_class = DEFAULT_MODEL_CLASS
    if spec:
        raise GraphpackError(f"function {fn.metadata.name!r}: unknown spec field(s) {', '.join(sorted(spec))}")
    for name, child in children.items():
        fn.add_child_function(name, child.get("url"), child.get("image"), child.get("requirements"),
                              child.get("kind"))
    if graph is not None:
        fn.spec.graph = graph_from_dict(graph)
    return fn


def new_function(name: str = "", project: str = "", tag: str = "", kind: str = "serving",
                 command: str | None = None, image: str | None = None, args: list | None = None,
                 runtime: Any = None, mode: str | None = None, handler: str | None = None,
                 source: str | None = None, requirements: list | None = None, kfp: Any = None,
                 requirements_file: str | None = None, filename: str | None = None) -> ServingFunction:
    """A new serving function (MLRun's ``new_function``): ``command`` (or ``filename``) names the
    code file; without one, class names resolve in the caller's code. MLRun's job-only arguments
    (``args``, ``runtime``, ``mode``, ``source``, ``kfp``) are errors, never silently ignored."""
    if kind not in ("serving", "", None):
        raise GraphpackError(f"function {name!r}: kind {kind!r} is not supported (only 'serving')")
    unsupported = [k for k, v in (("args", args), ("runtime", runtime), ("mode", mode), ("source", source),
                                  ("kfp", kfp)) if v]
    if unsupported:
        raise GraphpackError(f"new_function {name!r}: {', '.join(unsupported)} is not supported for serving "
                             "functions (use command= for the code file)")
    if command and filename and command != filename:
        raise GraphpackError(f"new_function {name!r}: command={command!r} and filename={filename!r} disagree")
    filename = filename or command
    if requirements_file:
        requirements = list(requirements or []) + _read_requirements(requirements_file)
    fn = ServingFunction(name, project, filename, image, requirements, tag)
    fn.spec.handler = handler
    if filename is None:
        fn._namespace = inspect.currentframe().f_back.f_globals  # type: ignore[union-attr]
    else:
        fn._base_dir = os.getcwd()
    return fn


def code_to_function(name: str = "", project: str = "", tag: str = "", filename: str | None = None,
                     handler: str | None = None, kind: str = "serving", image: str | None = None,
                     code_output: str | None = None, embed_code: bool = True, description: str = "",
                     requirements: list | None = None, categories: list | None = None,
                     labels: dict | None = None, with_doc: bool = True, ignored_tags: str | None = None,
                     requirements_file: str | None = None) -> ServingFunction:
    """MLRun's ``code_to_function``: the function's code is ``filename`` or the caller's module.
    (``code_output``, ``embed_code``, ``description``, ``categories``, ``with_doc`` and
    ``ignored_tags`` shape MLRun's function record; graphpack has none and takes them as given.)"""
    fn = new_function(name, project, tag, kind, image=image, filename=filename, requirements=requirements,
                      requirements_file=requirements_file)
    fn.metadata.labels.update(labels or {})
    if filename is None:
        fn._namespace = inspect.currentframe().f_back.f_globals  # type: ignore[union-attr]
    fn.spec.handler = handler
    return fn


def _read_requirements(path: str) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise GraphpackError(f"requirements_file {path!r} cannot be read: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _compact(data: dict) -> dict:
    return {k: v for k, v in data.items() if v not in (None, "", [], {}, False)}
