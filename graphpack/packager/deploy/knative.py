"""The Knative target: a ``serving.knative.dev/v1`` Service per function, a
``sources.knative.dev/v1`` PingSource per cron trigger and a KafkaSource per child reading a Kafka
queue (its kafka-cluster trigger), applied with server-side apply.

The remote state sits behind one small object (:class:`~.kube.KubeApi`: get / list / apply /
delete, in kube.py); :class:`~.kube.MemoryKube` is its in-memory fake for planner tests and users'
own tests. A trigger Knative cannot express (a sub-minute interval, custom cron headers, a
Kafka/v3io/... trigger) is a one-line error at plan time, before anything changes; so is a kind
the cluster does not serve, and the server checks every object (dry run) before any is applied.
"""
from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import GraphpackError
from ...runtime.cron import parse_duration
from ..kafka_auth import knative_net
from ..nuclio import secret_name
from ..render import Images, context_digest, offline_plan, render_contexts
from .base import Deployer, InvokeResult, Plan, Progress, Step, deployed, read_state, removal_order, write_state
from .http import call
from .kube import DEFAULT_NAMESPACE, KubeApi, MemoryKube, context_namespace, not_served  # noqa: F401 - KubeApi, MemoryKube: public here

PROJECT_LABEL = "graphpack.io/project"
FUNCTION_LABEL = "graphpack.io/function"
DIGEST_ANNOTATION = "graphpack.io/digest"
HEALTH_PATH = "/__health"
USER_ID = 10001
DEFAULT_PORT = 8080
READY_TIMEOUT = 300.0


def _quiet(message: str) -> None:
    """The default progress sink."""


# -- manifests ----------------------------------------------------------------------------------
def cron_schedule(interval: str, where: str) -> str:
    """A Nuclio cron ``interval`` as a 5-field schedule, when Knative's one-minute cron can say it."""
    try:
        seconds = parse_duration(interval)  # the processor's reading of a Nuclio interval
    except ValueError:
        seconds = 0
    if seconds and seconds == int(seconds) and seconds % 60 == 0:
        minutes = int(seconds) // 60
        if minutes < 60 and 60 % minutes == 0:
            return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            hours = minutes // 60
            return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    raise GraphpackError(f"{where}: interval {interval!r} cannot be a Knative PingSource schedule (cron with "
                         "one-minute resolution and no @every): use a whole number of minutes dividing an hour, "
                         "or of hours dividing a day, or a cron schedule")


def ping_source(context: Any, trigger_name: str, trigger: dict, service: str, namespace: str) -> dict:
    """The PingSource of one cron trigger (sink: the function's Service)."""
    where = f"{context.plan.where}: trigger {trigger_name!r}"
    attributes = trigger.get("attributes") or {}
    schedule = attributes.get("schedule") or cron_schedule(str(attributes.get("interval")), where)
    if schedule.startswith("@every") or len(schedule.split()) == 6:
        raise GraphpackError(f"{where}: schedule {schedule!r} cannot be a Knative PingSource schedule "
                             "(5-field cron only: no seconds field, no @every)")
    event = attributes.get("event") or {}
    headers = dict(event.get("headers") or {})
    content_type = next((headers.pop(k) for k in list(headers) if k.lower() == "content-type"), None)
    if headers:
        raise GraphpackError(f"{where}: cron event headers {sorted(headers)} cannot be sent by a Knative "
                             "PingSource (it sets only the content type and CloudEvent attributes)")
    method = str(event.get("method") or "POST").upper()
    if method != "POST":
        raise GraphpackError(f"{where}: cron event method {method!r}: a Knative PingSource always POSTs")
    sink: dict = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": service,
                          "namespace": namespace}}
    if event.get("path"):
        sink["uri"] = "/" + str(event["path"]).lstrip("/")
    spec: dict = {"schedule": schedule, "sink": sink}
    body = event.get("body")
    if body not in (None, ""):
        spec["data"] = str(body)
        spec["contentType"] = content_type or "text/plain"
        if spec["contentType"] == "application/json":
            try:
                json.loads(spec["data"])
            except ValueError:
                raise GraphpackError(f"{where}: cron event body is not JSON but its Content-Type is "
                                     "application/json (Knative checks it)") from None
    elif content_type:
        spec["contentType"] = content_type
    name = f"{service}-{trigger_name}".replace("_", "-").lower()
    if len(name) > 63:
        raise GraphpackError(f"{where}: PingSource name {name!r} is longer than 63 characters")
    return {"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(context)}, "spec": spec}


def kafka_source(context: Any, trigger_name: str, trigger: dict, service: str, namespace: str) -> dict:
    """The KafkaSource of a kafka-cluster trigger: the topic's records go to the function's Service
    as CloudEvents (type ``dev.knative.kafka.event``), each offset committed after a 2xx answer."""
    attributes = trigger.get("attributes") or {}
    spec: dict = {"bootstrapServers": list(attributes.get("brokers") or []),
                  "topics": list(attributes.get("topics") or []),
                  "consumerGroup": str(attributes.get("consumerGroup") or service),
                  "initialOffset": str(attributes.get("initialOffset") or "earliest"),
                  "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": service,
                                   "namespace": namespace}}}
    workers = trigger.get("numWorkers")
    if workers:
        spec["consumers"] = int(workers)
    net = knative_net(trigger_name, attributes, secret_name(context.plan.project, context.plan.where))
    if net:  # SASL/TLS by reference into the project's secret
        spec["net"] = net
    name = f"{service}-{trigger_name}".replace("_", "-").lower()
    if len(name) > 63:
        raise GraphpackError(f"{context.plan.where}: KafkaSource name {name!r} is longer than 63 characters")
    return {"apiVersion": "sources.knative.dev/v1", "kind": "KafkaSource",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(context)}, "spec": spec}


def _labels(context: Any) -> dict:
    labels = {PROJECT_LABEL: context.plan.project, FUNCTION_LABEL: context.plan.function,
              "app.kubernetes.io/managed-by": "graphpack"}
    return labels


def _volumes(config: dict) -> tuple[list, list]:
    volumes, mounts = [], []
    for item in config["spec"].get("volumes") or []:
        volumes.append(copy.deepcopy(item["volume"]))
        mounts.append(copy.deepcopy(item["volumeMount"]))
    return volumes, mounts


def service_manifest(context: Any, image: str, namespace: str) -> dict:
    """The Knative Service of one function (image by digest, probes on graphpack serve's health path)."""
    config = context.config
    spec = config["spec"]
    http: dict = next((t for t in spec["triggers"].values() if t["kind"] == "http"), {})
    port = int((http.get("attributes") or {}).get("port") or DEFAULT_PORT)
    workers = int(http.get("numWorkers") or 1)
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    consumer = any(e["name"] == "GRAPHPACK_QUEUE_CONSUMER" for e in spec["env"])
    if consumer:  # a child polling its queue must keep running: never scale it to zero
        low = max(1, low or 0)
        if high is not None and high < low:
            high = low
    annotations = _scrape_annotations(spec["env"], port)
    if low is not None:
        annotations["autoscaling.knative.dev/min-scale"] = str(low)
    if high is not None:
        annotations["autoscaling.knative.dev/max-scale"] = str(high)
    container: dict = {
        "name": "function",
        "image": image,
        "ports": [{"name": "http1", "containerPort": port, "protocol": "TCP"}],  # TCP: the server's default
        "env": copy.deepcopy(spec["env"]),
        "readinessProbe": {"httpGet": {"path": HEALTH_PATH}, "periodSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": HEALTH_PATH}, "periodSeconds": 10, "failureThreshold": 3,
                          "initialDelaySeconds": 5},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.get("resources"):
        container["resources"] = copy.deepcopy(spec["resources"])
    volumes, mounts = _volumes(config)
    if mounts:
        container["volumeMounts"] = mounts
    template_spec: dict = {"containerConcurrency": workers, "containers": [container]}
    if volumes:
        template_spec["volumes"] = volumes
    template: dict = {"metadata": {"labels": _labels(context), "annotations": annotations}, "spec": template_spec}
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": context.name, "namespace": namespace, "labels": _labels(context),
                     "annotations": {DIGEST_ANNOTATION: context_digest(context)}},
        "spec": {"template": template},
    }


def _scrape_annotations(env: list, port: int) -> dict:
    """Prometheus' usual scrape annotations for graphpack serve's ``/metrics`` (unless the
    function's env turns metrics off)."""
    setting = next((str(e.get("value", "")) for e in env if e.get("name") == "GRAPHPACK_METRICS"), "1")
    if setting.strip().lower() in ("0", "off", "false", "no"):
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}


def manifests(context: Any, image: str, namespace: str = DEFAULT_NAMESPACE) -> list[dict]:
    """The Service of a function, then a PingSource per cron trigger and a KafkaSource per
    kafka-cluster trigger; errors name what Knative cannot do."""
    plan, spec = context.plan, context.config["spec"]
    queue = plan.input_queue
    if queue is not None and queue.scheme == "v3io":
        raise GraphpackError(f"{plan.where}: queue {queue.step!r} ({queue.url}): Knative has no v3io stream "
                             "source; use an s3:// queue (read by graphpack's own consumer)")
    service = service_manifest(context, image, namespace)
    out = [service]
    for name, trigger in sorted(spec["triggers"].items()):
        kind = trigger["kind"]
        if kind == "http":
            continue
        if kind == "cron":
            out.append(ping_source(context, name, trigger, context.name, namespace))
            continue
        if kind == "kafka-cluster":
            out.append(kafka_source(context, name, trigger, context.name, namespace))
            continue
        raise GraphpackError(f"{plan.where}: trigger {name!r} of kind {kind!r} cannot be deployed to Knative "
                             "(graphpack maps http to the Service, cron to a PingSource and kafka-cluster "
                             "to a KafkaSource)")
    return out


def service_state(obj: dict | None) -> tuple[str, str]:
    """(state, message) from a Service's Ready condition: ready, failed, deploying or missing."""
    if obj is None:
        return "missing", ""
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation")
    if generation is not None and status.get("observedGeneration") not in (None, generation):
        return "deploying", "the controller has not seen the latest spec yet"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return "deploying", ""
    message = ": ".join(x for x in (ready.get("reason"), ready.get("message")) if x)
    if ready.get("status") == "True":
        return "ready", message
    if ready.get("status") == "False":
        return "failed", message
    return "deploying", message


# -- the deployer -------------------------------------------------------------------------------
class KnativeDeployer(Deployer):
    """Deploys a project as Knative Services (+ PingSources, KafkaSources), children before the root."""

    target = "knative"

    def __init__(self, project_dir: str | Path = ".", namespace: str | None = None, api: Any = None,
                 images: dict[str, str] | None = None, registry: str | None = None, builder: Any = None,
                 wait: bool = True, ready_timeout: float = READY_TIMEOUT, force: bool = False, **kube: Any) -> None:
        self.root = Path(project_dir).resolve()
        self.state_path = self.root / ".graphpack" / "knative.json"
        self.build_dir = self.root / ".graphpack" / "build-knative"
        # the namespace: given, else $GRAPHPACK_NAMESPACE, else where this project was deployed, else
        # the kubeconfig context's (as kubectl), else "default"
        self.namespace = (namespace or os.environ.get("GRAPHPACK_NAMESPACE") or self._state().get("namespace")
                          or (None if api is not None or kube.get("host") else
                              context_namespace(kube.get("kubeconfig"), kube.get("context")))
                          or DEFAULT_NAMESPACE)
        self._api = api
        self._kube = kube
        self.images = Images(images, registry or os.environ.get("GRAPHPACK_REGISTRY"), builder)
        self.wait = wait
        self.ready_timeout = ready_timeout
        self.force = force

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = KubeApi(self.namespace, **self._kube)
        return self._api

    def _state(self) -> dict:
        return read_state(self.state_path)

    def _save(self, state: dict) -> None:
        write_state(self.state_path, state)

    def dry_run(self, project: Any, functions: list[str] | None = None) -> Plan:
        contexts = render_contexts(project, self.target, functions)
        placeholder = "graphpack.invalid/pending@sha256:" + "0" * 64
        wanted = {c.plan.function: manifests(c, placeholder, self.namespace) for c in contexts}
        return offline_plan(self.target, project, contexts, self.images, self.build_dir,
                            lambda c: [f"{m['kind']} {self.namespace}/{m['metadata']['name']}"
                                       for m in wanted[c.plan.function]],
                            "the Kubernetes API ($KUBECONFIG)")

    def plan(self, project: Any, functions: list[str] | None = None) -> Plan:
        contexts = render_contexts(project, self.target, functions)
        placeholder = "graphpack.invalid/pending@sha256:" + "0" * 64
        wanted = {c.plan.function: manifests(c, placeholder, self.namespace) for c in contexts}
        self.images.check(contexts, self.target)
        self.images.verify(contexts)
        for kind in sorted({m["kind"] for objects in wanted.values() for m in objects}):
            if not self.api.served(kind):  # before anything changes
                raise not_served(kind, getattr(self.api, "host", "?"))
        steps: list[Step] = []
        for context in contexts:
            function, name = context.plan.function, context.name
            digest = context_digest(context)
            current = self.api.get("Service", name)
            details = {"name": name, "root": context.plan.root, "digest": digest,
                       "pings": [m["metadata"]["name"] for m in wanted[function][1:] if m["kind"] == "PingSource"],
                       "kafka_sources": [m["metadata"]["name"] for m in wanted[function] if m["kind"] == "KafkaSource"]}
            if current is not None and not self._ours(current, project.name, function):
                raise GraphpackError(f"Knative Service {name!r} in namespace {self.namespace!r} exists and "
                                     f"was not deployed by graphpack for {project.name}/{function}: "
                                     "rename the project or function, or delete it")
            stale = sorted(m["metadata"]["name"] for m in self._pings(project.name, function)
                           if m["metadata"]["name"] not in details["pings"])
            if stale:
                details["stale_pings"] = stale
            # KafkaSources are listed from the state, not the cluster: the kind exists only where
            # Knative's Kafka source is installed, and a graph without Kafka must not need it
            old_kafka = (self._state().get("functions", {}).get(function) or {}).get("kafka_sources") or []
            stale_kafka = sorted(set(old_kafka) - set(details["kafka_sources"]))
            if stale_kafka:
                details["stale_kafka_sources"] = stale_kafka
            if current is None:
                steps.append(Step("create", function, "new function", details))
            elif current["metadata"].get("annotations", {}).get(DIGEST_ANNOTATION) != digest:
                steps.append(Step("update", function, "code or config changed", details))
            elif stale or any(self.api.get("PingSource", p) is None for p in details["pings"]):
                steps.append(Step("update", function, "cron sources changed", details))
            elif stale_kafka or any(self.api.get("KafkaSource", k) is None for k in details["kafka_sources"]):
                steps.append(Step("update", function, "Kafka sources changed", details))
            else:
                state, message = service_state(current)
                if state == "failed":
                    steps.append(Step("update", function, f"failed: {message}", details))
                else:
                    steps.append(Step("keep", function, f"{state} at {current.get('status', {}).get('url')}",
                                      details))
        return Plan(self.target, project.name, tuple(steps), str(self.build_dir), tuple(contexts))

    def _pings(self, project: str, function: str) -> list[dict]:
        """The function's PingSources (none where the cluster has no Knative Eventing)."""
        if not self.api.served("PingSource"):
            return []
        return self.api.list("PingSource", f"{PROJECT_LABEL}={project},{FUNCTION_LABEL}={function}")

    @staticmethod
    def _ours(obj: dict, project: str, function: str) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return labels.get(PROJECT_LABEL) == project and labels.get(FUNCTION_LABEL) == function

    def apply(self, plan: Plan, progress: Progress | None = None) -> dict:
        progress = progress or _quiet
        state = self._state()
        state.update(project=plan.project, namespace=self.namespace)
        functions = state.setdefault("functions", {})
        changed = {s.function for s in plan.changes}
        contexts = [c for c in plan.artifacts if c.plan.function in changed]
        refs = self.images.resolve(contexts, self.build_dir, progress) if contexts else {}
        objects = {c.plan.function: manifests(c, refs[c.plan.function], self.namespace) for c in contexts}
        for obj in (o for function in objects.values() for o in function):
            # the server checks every object first (schema, rights, other field managers): an
            # error changes nothing rather than leaving half a project applied
            self.api.apply(obj, force=self.force, dry_run=True)
        for step in plan.steps:
            functions[step.function] = {"name": step.details["name"], "root": step.details["root"]}
            if step.details.get("kafka_sources"):
                functions[step.function]["kafka_sources"] = list(step.details["kafka_sources"])
            if step.action == "keep":
                continue
            for obj in objects[step.function]:
                progress(f"applying {obj['kind']} {obj['metadata']['name']}")
                self.api.apply(obj, force=self.force)
            for name in step.details.get("stale_pings", ()):
                progress(f"deleting PingSource {name}")
                self.api.delete("PingSource", name)
            for name in step.details.get("stale_kafka_sources", ()):
                progress(f"deleting KafkaSource {name}")
                self.api.delete("KafkaSource", name)
            self._save(state)
            if self.wait:
                self._wait_ready(step.details["name"], progress)
        self._save(state)
        return self.status()

    def _wait_ready(self, name: str, progress: Progress) -> None:
        started = time.monotonic()
        deadline = started + self.ready_timeout
        said = 0
        while True:
            state, message = service_state(self.api.get("Service", name))
            waited = int(time.monotonic() - started)
            if waited >= said + 10 and state not in ("ready", "failed"):
                said = waited
                progress(f"still waiting for Knative Service {name} to be ready ({state}"
                         + (f": {message}" if message else "") + f") ... {waited} s")
            if state == "ready":
                progress(f"{name} is ready")
                return
            if state == "failed":
                raise GraphpackError(f"Knative Service {name!r} failed: {message}")
            if time.monotonic() > deadline:
                raise GraphpackError(
                    f"Knative Service {name!r} in namespace {self.namespace!r} not ready after "
                    f"{self.ready_timeout:g}s: waited for its Ready condition to be True (last: {state}"
                    + (f", {message}" if message else ", no status from the Knative Serving controller")
                    + ")")
            time.sleep(0.5)

    def status(self) -> dict:
        out = {}
        for function, entry in self._state().get("functions", {}).items():
            obj = self.api.get("Service", entry["name"])
            state, message = service_state(obj)
            out[function] = {"url": (obj or {}).get("status", {}).get("url"), "state": state,
                             "message": message, "name": entry["name"], "root": entry.get("root")}
        return out

    def _entry(self, function: str) -> dict:
        return deployed(self._state()["functions"], function)

    def invoke(self, function: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, timeout: float = 60.0) -> InvokeResult:
        obj = self.api.get("Service", self._entry(function)["name"])
        url = (obj or {}).get("status", {}).get("url")
        if not url:
            raise GraphpackError(f"function {function!r} has no URL yet (state {service_state(obj)[0]})")
        return call(url.rstrip("/") + "/" + (path or "/").lstrip("/"), method or ("POST" if body is not None else "GET"),
                    body, headers, timeout)

    def logs(self, function: str, follow: bool = False) -> Iterator[str]:
        yield from self.api.logs(self._entry(function)["name"])

    def delete(self, functions: list[str] | None = None, purge: bool = False) -> list[str]:
        """Delete what graphpack created for ``functions``: objects carrying this project's and
        function's labels; anything else of the same name is left alone (an error says so)."""
        state = self._state()
        known = state["functions"]
        names = removal_order(known, functions)
        project = state.get("project", "")
        doomed: list[tuple[str, str]] = []
        for name in names:
            doomed += [("PingSource", p["metadata"]["name"]) for p in self._pings(project, name)]
            sources = known[name].get("kafka_sources") or []
            for kind, obj_name in [("KafkaSource", k) for k in sources if self.api.served("KafkaSource")] + \
                                  [("Service", known[name]["name"])]:
                obj = self.api.get(kind, obj_name)
                if obj is not None and not self._ours(obj, project, name):
                    raise GraphpackError(f"{kind} {obj_name!r} in namespace {self.namespace!r} is not the one "
                                         f"graphpack deployed for {project}/{name} (other labels): left alone, "
                                         "nothing deleted")
                if obj is not None:
                    doomed.append((kind, obj_name))
        for kind, obj_name in doomed:
            self.api.delete(kind, obj_name)
        for name in names:
            known.pop(name)
        self._save(state)
        return names
