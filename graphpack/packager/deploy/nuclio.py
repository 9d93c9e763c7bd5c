"""The Nuclio target: functions deployed through the Nuclio dashboard's REST API with a prebuilt
image (``spec.image``, no build), children before the root, waiting for ``ready``.

The dashboard sits behind one small object (:class:`Dashboard`: get / create / update / delete /
invoke); :class:`MemoryDashboard` is its in-memory fake for planner tests and users' own tests.
Dashboard errors (401, 404, 409, 5xx, unreachable) become one-line GraphpackErrors here.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import GraphpackError
from ..kafka_auth import resolve_refs
from ..render import Images, context_digest, offline_plan, render_contexts
from .base import Deployer, InvokeResult, Plan, Progress, Step, deployed, read_state, removal_order, write_state
from .http import call

DEFAULT_URL = "http://127.0.0.1:8070"
PROJECT_LABEL = "nuclio.io/project-name"
FUNCTION_LABEL = "graphpack.io/function"
DIGEST_ANNOTATION = "graphpack.io/digest"
READY_TIMEOUT = 300.0
TERMINAL = ("ready", "error", "unhealthy")
DASHBOARD_PORT = 8080  # the local platform's invocation assumes the function listens on 8080


def _quiet(message: str) -> None:
    """The default progress sink."""


def deploy_config(context: Any, image: str, namespace: str | None = None, local_port: int | None = None,
                  host_paths: tuple[str, ...] = ()) -> dict:
    """The function config the dashboard gets: the built function.yaml with ``spec.image`` and no build.

    ``local_port`` (Nuclio's local platform on a host without bridge networking): the container runs on
    the host network without port publishing and graphpack serve listens on that port (``$PORT``).
    ``host_paths``: host directories mounted at the same path (e.g. where file queues live).
    A Kafka trigger's credentials stay ``$ref:`` placeholders here (this config is also written
    to files by :func:`graphpack.packager.render.render`); :meth:`NuclioDeployer.apply` fills them in the request only.
    """
    config = copy.deepcopy(context.config)
    config.pop("apiVersion", None)
    config.pop("kind", None)
    meta = config["metadata"]
    if namespace:
        meta["namespace"] = namespace
    meta.setdefault("annotations", {})[DIGEST_ANNOTATION] = context_digest(context)
    spec = config["spec"]
    spec["image"] = image
    spec.pop("build", None)  # spec.image and no build source: the dashboard runs the image as is
    spec.setdefault("readinessTimeoutSeconds", 120)
    if local_port is not None:
        spec.setdefault("platform", {}).setdefault("attributes", {})["network"] = "host"
        for trigger in spec["triggers"].values():
            if trigger["kind"] == "http":
                attributes = trigger.setdefault("attributes", {})
                attributes["disablePortPublishing"] = True
                attributes.pop("port", None)
        spec["env"] = [e for e in spec["env"] if e["name"] != "PORT"] + [{"name": "PORT", "value": str(local_port)}]
    for index, path in enumerate(host_paths):
        volume = f"graphpack-host-{index}"
        spec.setdefault("volumes", []).append({"volume": {"name": volume, "hostPath": {"path": path}},
                                               "volumeMount": {"name": volume, "mountPath": path}})
    return config


# -- the remote state ---------------------------------------------------------------------------
class Dashboard:
    """The Nuclio dashboard REST API (``/api/functions``, ``/api/function_invocations``)."""

    def __init__(self, url: str = DEFAULT_URL, namespace: str | None = None, username: str | None = None,
                 password: str | None = None, access_key: str | None = None, timeout: float = 30.0) -> None:
        url = url.rstrip("/")
        self.url = url
        self.api = url if url.endswith("/api") else url + "/api"
        self.namespace = namespace
        self.timeout = timeout
        self.headers: dict[str, str] = {}
        if username is not None or password is not None:
            token = base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        if access_key:
            self.headers["X-V3io-Session-Key"] = access_key
            if "Authorization" not in self.headers:
                token = base64.b64encode(f"{username or ''}:{access_key}".encode()).decode()
                self.headers["Authorization"] = f"Basic {token}"
        if namespace:
            self.headers["X-Nuclio-Function-Namespace"] = namespace

    def _request(self, what: str, method: str, path: str, body: Any = None, headers: dict | None = None,
                 ok: tuple[int, ...] = (200, 201, 202, 204), timeout: float | None = None) -> Any:
        import httpx

        all_headers = {**self.headers, **(headers or {})}
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = httpx.request(method, self.api + path, content=content, headers=all_headers,
                                     timeout=timeout or self.timeout)
        except httpx.TimeoutException:
            raise GraphpackError(f"{what}: the Nuclio dashboard at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise GraphpackError(f"{what}: cannot reach the Nuclio dashboard at {self.url}: {exc}") from None
        if response.status_code in ok:
            return response
        detail = _error_text(response)
        status = response.status_code
        if status == 401:
            raise GraphpackError(f"{what}: the Nuclio dashboard at {self.url} rejected the credentials (401)"
                                 + (f": {detail}" if detail else ""))
        if status == 403:
            raise GraphpackError(f"{what}: forbidden by the Nuclio dashboard (403): {detail}")
        if status == 404:
            raise KeyError(what)
        if status == 409:
            raise GraphpackError(f"{what}: conflict (409): {detail or 'the function already exists'}")
        raise GraphpackError(f"{what}: the Nuclio dashboard answered {status}: {detail or response.reason_phrase}")

    def get(self, name: str) -> dict | None:
        try:
            return self._request(f"get function {name}", "GET", f"/functions/{name}").json()
        except KeyError:
            return None

    def list(self, project: str | None = None) -> dict:
        headers = {"X-Nuclio-Project-Name": project} if project else {}
        return self._request("list functions", "GET", "/functions", headers=headers).json() or {}

    def create(self, config: dict, project: str) -> None:
        name = config["metadata"]["name"]
        self._request(f"create function {name}", "POST", "/functions", config,
                      {"X-Nuclio-Project-Name": project, "X-Nuclio-Wait-Function-Action": "false"})

    def update(self, config: dict, project: str) -> None:
        name = config["metadata"]["name"]
        try:
            self._request(f"update function {name}", "PUT", f"/functions/{name}", config,
                          {"X-Nuclio-Project-Name": project, "X-Nuclio-Wait-Function-Action": "false"})
        except KeyError:
            raise GraphpackError(f"update function {name}: it no longer exists (404)") from None

    def delete(self, name: str) -> bool:
        body = {"metadata": {"name": name, **({"namespace": self.namespace} if self.namespace else {})}}
        try:
            self._request(f"delete function {name}", "DELETE", "/functions", body,
                          {"X-Nuclio-Delete-Function-Ignore-State-Validation": "true"})
        except KeyError:
            return False
        return True

    def ensure_project(self, project: str) -> None:
        """Create the Nuclio project if missing (functions are labelled with it)."""
        try:
            projects = self._request("list projects", "GET", "/projects").json() or {}
        except KeyError:
            return
        if project in projects:
            return
        body = {"metadata": {"name": project, **({"namespace": self.namespace} if self.namespace else {})},
                "spec": {}}
        try:
            self._request(f"create project {project}", "POST", "/projects", body)
        except GraphpackError as exc:
            if "409" not in str(exc):
                raise

    def invoke(self, name: str, path: str, method: str, body: Any, headers: dict, timeout: float) -> InvokeResult:
        extra = {"X-Nuclio-Function-Name": name, "X-Nuclio-Path": path or "/",
                 "X-Nuclio-Invoke-Timeout": f"{int(timeout)}s", **self.headers, **headers}
        return call(self.api + "/function_invocations", method, body, extra, timeout + 5)


def _error_text(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("errorStackTrace") or data)[:500]
    return str(data)[:500]


class MemoryDashboard:
    """An in-memory Dashboard (public fake). ``fail`` maps a function name to the error message its
    deploy ends with (state ``error``); everything else becomes ``ready`` at once."""

    def __init__(self, fail: dict[str, str] | None = None) -> None:
        self.functions: dict[str, dict] = {}
        self.fail = dict(fail or {})
        self.calls: list[tuple[str, str]] = []
        self.projects: set[str] = set()

    def get(self, name: str) -> dict | None:
        return copy.deepcopy(self.functions.get(name))

    def list(self, project: str | None = None) -> dict:
        return {n: copy.deepcopy(f) for n, f in self.functions.items()
                if project is None or f["metadata"].get("labels", {}).get(PROJECT_LABEL) == project}

    def _store(self, config: dict, project: str) -> None:
        obj = copy.deepcopy(config)
        obj["metadata"].setdefault("labels", {})[PROJECT_LABEL] = project
        name = obj["metadata"]["name"]
        if name in self.fail:
            obj["status"] = {"state": "error", "message": self.fail[name],
                             "logs": [{"time": 1, "level": "error", "message": self.fail[name]}]}
        else:
            obj["status"] = {"state": "ready", "httpPort": 8080, "logs": [{"time": 1, "level": "info",
                                                                        "message": "Function deploy complete"}]}
        self.functions[name] = obj

    def create(self, config: dict, project: str) -> None:
        name = config["metadata"]["name"]
        self.calls.append(("create", name))
        if name in self.functions:
            raise GraphpackError(f"create function {name}: conflict (409): the function already exists")
        self._store(config, project)

    def update(self, config: dict, project: str) -> None:
        self.calls.append(("update", config["metadata"]["name"]))
        self._store(config, project)

    def delete(self, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.functions.pop(name, None) is not None

    def ensure_project(self, project: str) -> None:
        self.projects.add(project)

    def invoke(self, name: str, path: str, method: str, body: Any, headers: dict, timeout: float) -> InvokeResult:
        self.calls.append(("invoke", name))
        if name not in self.functions:
            return InvokeResult(404, {"error": f"function {name} not found"}, "application/json")
        return InvokeResult(200, body, "application/json")


def function_state(obj: dict | None) -> tuple[str, str]:
    if obj is None:
        return "missing", ""
    status = obj.get("status") or {}
    return str(status.get("state") or "unknown"), str(status.get("message") or "")


def _log_lines(obj: dict | None, after: float = -1) -> list[tuple[float, str]]:
    out = []
    for entry in sorted((obj or {}).get("status", {}).get("logs") or [], key=lambda e: e.get("time", 0)):
        if entry.get("time", 0) > after:
            extra = {k: v for k, v in entry.items() if k not in ("time", "level", "message", "name")}
            text = f"{entry.get('level', '')}: {entry.get('message', '')}"
            if extra:
                text += " " + json.dumps(extra, sort_keys=True, default=str)
            out.append((entry.get("time", 0), text))
    return out


# -- the deployer -------------------------------------------------------------------------------
class NuclioDeployer(Deployer):
    """Deploys a project through the Nuclio dashboard, children before the root."""

    target = "nuclio"

    def __init__(self, project_dir: str | Path = ".", url: str | None = None, namespace: str | None = None,
                 dashboard: Any = None, images: dict[str, str] | None = None, registry: str | None = None,
                 builder: Any = None, username: str | None = None, password: str | None = None,
                 access_key: str | None = None, local_platform: bool | None = None,
                 host_paths: tuple[str, ...] = (), ready_timeout: float = READY_TIMEOUT, poll: float = 0.5) -> None:
        self.root = Path(project_dir).resolve()
        env = os.environ
        self.url = url or env.get("NUCLIO_DASHBOARD_URL") or DEFAULT_URL
        self.namespace = namespace or env.get("NUCLIO_NAMESPACE") or None
        self._dashboard = dashboard
        self._auth: dict[str, Any] = {"username": username or env.get("NUCLIO_USERNAME"),
                      "password": password or env.get("NUCLIO_PASSWORD"),
                      "access_key": access_key or env.get("NUCLIO_ACCESS_KEY")}
        self.images = Images(images, registry or env.get("GRAPHPACK_REGISTRY"), builder)
        if local_platform is None:
            local_platform = env.get("GRAPHPACK_NUCLIO_PLATFORM", "") == "local"
        self.local_platform = local_platform
        self.host_paths = tuple(host_paths) or tuple(p for p in env.get("GRAPHPACK_NUCLIO_HOST_PATHS", "").split(
            os.pathsep) if p)
        self.ready_timeout = ready_timeout
        self.poll = poll
        self.state_path = self.root / ".graphpack" / "nuclio.json"
        self.build_dir = self.root / ".graphpack" / "build-nuclio"

    @property
    def dashboard(self) -> Any:
        if self._dashboard is None:
            self._dashboard = Dashboard(self.url, self.namespace, **self._auth)
        return self._dashboard

    def _state(self) -> dict:
        return read_state(self.state_path)

    def _save(self, state: dict) -> None:
        write_state(self.state_path, state)

    def _ports(self, contexts: list) -> dict[str, int]:
        """Local platform: the root of each function gets 8080, other functions the next ports."""
        ports: dict[str, int] = {}
        next_port = DASHBOARD_PORT + 100
        for context in contexts:
            if context.plan.is_root and DASHBOARD_PORT not in ports.values():
                ports[context.plan.function] = DASHBOARD_PORT
            else:
                ports[context.plan.function] = next_port
                next_port += 1
        return ports

    def dry_run(self, project: Any, functions: list[str] | None = None) -> Plan:
        contexts = render_contexts(project, self.target, functions)
        return offline_plan(self.target, project, contexts, self.images, self.build_dir,
                            lambda c: [f"Nuclio function {c.name} (project {project.name})"],
                            f"the Nuclio dashboard at {self.url}")

    def plan(self, project: Any, functions: list[str] | None = None) -> Plan:
        contexts = render_contexts(project, self.target, functions)
        self.images.check(contexts, self.target)
        self.images.verify(contexts)
        ports = self._ports(contexts) if self.local_platform else {}
        steps = []
        for context in contexts:
            function, name = context.plan.function, context.name
            digest = context_digest(context)
            details = {"name": name, "root": context.plan.root, "digest": digest}
            if function in ports:
                details["port"] = ports[function]
            current = self.dashboard.get(name)
            if current is None:
                steps.append(Step("create", function, "new function", details))
                continue
            meta = current.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(PROJECT_LABEL) != project.name or labels.get(FUNCTION_LABEL) != context.plan.root:
                raise GraphpackError(f"Nuclio function {name!r} exists and was not deployed by graphpack for "
                                     f"{project.name}/{function}: rename the project or function, or delete it")
            state, message = function_state(current)
            if (meta.get("annotations") or {}).get(DIGEST_ANNOTATION) != digest:
                steps.append(Step("update", function, "code or config changed", details))
            elif state != "ready":
                steps.append(Step("update", function, f"state {state}" + (f": {message}" if message else ""),
                                  details))
            else:
                steps.append(Step("keep", function, "ready", details))
        return Plan(self.target, project.name, tuple(steps), str(self.build_dir), tuple(contexts))

    def apply(self, plan: Plan, progress: Progress | None = None) -> dict:
        progress = progress or _quiet
        state = self._state()
        state.update(project=plan.project, url=self.url, namespace=self.namespace)
        functions = state.setdefault("functions", {})
        changed = {s.function for s in plan.changes}
        contexts = [c for c in plan.artifacts if c.plan.function in changed]
        refs = self.images.resolve(contexts, self.build_dir, progress) if contexts else {}
        if contexts:
            self.dashboard.ensure_project(plan.project)
        for step in plan.steps:
            entry = {"name": step.details["name"], "root": step.details["root"]}
            if "port" in step.details:
                entry["port"] = step.details["port"]
            functions[step.function] = entry
            if step.action == "keep":
                continue
            context = next(c for c in contexts if c.plan.function == step.function)
            config = deploy_config(context, refs[step.function], self.namespace, step.details.get("port"),
                                   self.host_paths)
            progress(f"{'creating' if step.action == 'create' else 'updating'} Nuclio function {config['metadata']['name']}")
            # Kafka credentials from this environment, in the request only: the dashboard keeps them
            # in the function's Nuclio secret, the files keep the $ref: placeholders
            config = resolve_refs(context.plan.where, config)
            if step.action == "create":
                self.dashboard.create(config, plan.project)
            else:
                self.dashboard.update(config, plan.project)
            self._save(state)
            self._wait_ready(step.details["name"], progress)
        self._save(state)
        return self.status()

    def _wait_ready(self, name: str, progress: Progress) -> dict:
        started = time.monotonic()
        deadline = started + self.ready_timeout
        last = -1.0
        said = 0
        while True:
            obj = self.dashboard.get(name)
            for stamp, line in _log_lines(obj, last):
                progress(f"{name}: {line}")
                last = stamp
            state, message = function_state(obj)
            waited = int(time.monotonic() - started)
            if waited >= said + 10 and state not in TERMINAL:
                said = waited
                progress(f"still waiting for Nuclio function {name} to be ready (state {state}) ... {waited} s")
            if state == "ready":
                return obj or {}
            if state in ("error", "unhealthy"):
                logs = "\n".join(line for _, line in _log_lines(obj)[-10:])
                first = message.strip().splitlines()[0] if message.strip() else "no message"
                raise GraphpackError(f"Nuclio function {name!r} is {state}: {first}"
                                     + (f"\nlast log lines:\n{logs}" if logs else "")
                                     + (f"\nfull message:\n{message.strip()}" if "\n" in message.strip() else ""))
            if obj is None and time.monotonic() > deadline - self.ready_timeout + 10:
                raise GraphpackError(f"Nuclio function {name!r} disappeared while deploying")
            if time.monotonic() > deadline:
                raise GraphpackError(f"Nuclio function {name!r} not ready in {self.ready_timeout:.0f}s "
                                     f"(state {state})")
            time.sleep(self.poll)

    def status(self) -> dict:
        out = {}
        for function, entry in self._state().get("functions", {}).items():
            obj = self.dashboard.get(entry["name"])
            state, message = function_state(obj)
            status = (obj or {}).get("status") or {}
            urls = status.get("externalInvocationUrls") or status.get("internalInvocationUrls") or []
            url = f"http://127.0.0.1:{entry['port']}" if entry.get("port") else (
                f"http://{urls[0]}" if urls and "://" not in urls[0] else (urls[0] if urls else None))
            out[function] = {"url": url, "state": state, "message": message, "name": entry["name"],
                             "root": entry.get("root")}
        return out

    def _entry(self, function: str) -> dict:
        return deployed(self._state()["functions"], function)

    def invoke(self, function: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, timeout: float = 60.0) -> InvokeResult:
        entry = self._entry(function)
        method = method or ("POST" if body is not None else "GET")
        port = entry.get("port")
        if port is not None and port != DASHBOARD_PORT:  # local platform: only 8080 is reachable via the dashboard
            return call(f"http://127.0.0.1:{port}/" + (path or "/").lstrip("/"), method, body, headers, timeout)
        return self.dashboard.invoke(entry["name"], path, method, body, dict(headers or {}), timeout)

    def logs(self, function: str, follow: bool = False) -> Iterator[str]:
        obj = self.dashboard.get(self._entry(function)["name"])
        for _, line in _log_lines(obj):
            yield line

    def delete(self, functions: list[str] | None = None, purge: bool = False) -> list[str]:
        state = self._state()
        known = state["functions"]
        names = removal_order(known, functions)
        for name in names:
            self.dashboard.delete(known[name]["name"])
            deadline = time.monotonic() + 60
            while self.dashboard.get(known[name]["name"]) is not None and time.monotonic() < deadline:
                time.sleep(self.poll)
            known.pop(name)
        self._save(state)
        return names
