"""The Kubernetes API for the Knative target: :class:`KubeApi` (the ``kubernetes`` client: get /
list / server-side apply / delete of Knative objects, pod logs), its in-memory fake
:class:`MemoryKube`, and the one-line errors a cluster's answers become (401/403, a CRD the cluster
lacks, another field manager's fields).
"""
from __future__ import annotations

import copy
import json
import os
import re
from typing import Any, List

from ...errors import GraphpackError

DEFAULT_NAMESPACE = "default"
FIELD_MANAGER = "graphpack"
SERVICE = ("serving.knative.dev", "v1", "services", "Service")
PING = ("sources.knative.dev", "v1", "pingsources", "PingSource")
KAFKA = ("sources.knative.dev", "v1", "kafkasources", "KafkaSource")
KINDS = {"Service": SERVICE, "PingSource": PING, "KafkaSource": KAFKA}
REQUEST_TIMEOUT = 30.0  # seconds for one API call: a cluster that does not answer is an error, not a hang
CRD_SOURCES = {"Service": "Knative Serving", "PingSource": "Knative Eventing",
               "KafkaSource": "Knative's Kafka source (eventing-kafka-broker)"}


def not_served(kind: str, host: str) -> GraphpackError:
    """The error for a kind whose CRD the cluster lacks, naming the CRD and what installs it."""
    group, version, plural, _ = KINDS[kind]
    return GraphpackError(f"the Kubernetes API at {host} does not serve {kind} ({group}/{version}): the CRD "
                          f"{plural}.{group} is not installed; install {CRD_SOURCES[kind]}")


def conflict_line(status: dict) -> str:
    """One line for a server-side apply conflict (a 409 Status naming other field managers)."""
    causes = (status.get("details") or {}).get("causes") or []
    fields = sorted({str(c.get("field")) for c in causes if c.get("field")})
    managers = sorted({m for c in causes for m in re.findall(r'conflict with "([^"]+)"', str(c.get("message")))})
    if not fields:
        return " ".join(str(status.get("message")).split())
    return (f"field(s) {', '.join(fields)} are managed by {', '.join(managers) or 'another field manager'} "
            "(409 conflict): nothing was changed; rerun with --force to take them over")


def context_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's context (the current one unless named), as kubectl reads
    it; None when it sets none or there is no readable kubeconfig."""
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig or os.environ.get("KUBECONFIG"))
    except Exception:  # noqa: BLE001 - no kubeconfig (yet), or not readable: the caller's default applies
        return None
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace") or None


def unreachable(exc: BaseException, timeout: float) -> str:
    """Why a connection to the API failed, in a few words (urllib3 wraps the cause in MaxRetryError)."""
    cause = getattr(exc, "reason", None) or exc
    text = str(cause)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:")[-1].split("(_ssl")[0].strip(" ')")
        return (f"its TLS certificate is not trusted ({detail}): check the kubeconfig's "
                "certificate-authority for this cluster")
    if "Connection refused" in text or isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if "timed out" in text or isinstance(cause, TimeoutError):
        return f"no answer within {timeout:g} s"
    return type(cause).__name__


class KubeApi:
    """The Kubernetes API for Knative objects (kubernetes Python client); errors become GraphpackError."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, kubeconfig: str | None = None,
                 context: str | None = None, host: str | None = None, token: str | None = None,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        try:
            from kubernetes import client, config
        except ImportError:
            raise GraphpackError("the knative target needs the kubernetes client: pip install 'graphpack[knative]'") \
                from None
        self.namespace = namespace
        if host:
            configuration = client.Configuration()
            configuration.host = host
            if token:
                configuration.api_key = {"authorization": f"Bearer {token}"}
            api_client = client.ApiClient(configuration)
        else:
            try:
                api_client = config.new_client_from_config(
                    config_file=kubeconfig or os.environ.get("KUBECONFIG"), context=context)
            except Exception as exc:  # noqa: BLE001 - kubeconfig missing or malformed: any error
                raise GraphpackError(f"cannot load kubeconfig: {exc}") from None
        self.host = api_client.configuration.host
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self._served: dict[str, bool] = {}
        self.timeout = timeout

    def _call(self, what: str, fn: Any, *args: Any, kind: str = "", **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            try:
                body = json.loads(exc.body or "")
            except (TypeError, ValueError):
                body = {}
            body = body if isinstance(body, dict) else {}
            reason = " ".join(str(body.get("message") or exc.reason or "").split())  # one line
            if exc.status == 401:
                raise GraphpackError(f"{what}: the Kubernetes API at {self.host} rejected the credentials "
                                     f"(401): {reason}") from None
            if exc.status == 403:
                raise GraphpackError(f"{what}: forbidden (403) for the kubeconfig's user in namespace "
                                     f"{self.namespace!r}: {reason}") from None
            details = body.get("details") or {}
            if exc.status == 404 and details.get("kind") == "namespaces":
                raise GraphpackError(f"{what}: namespace {self.namespace!r} does not exist in the cluster at "
                                     f"{self.host}: create it, or choose another with $GRAPHPACK_NAMESPACE") from None
            if exc.status == 404 and kind and not details.get("name"):
                raise not_served(kind, self.host) from None  # the resource type itself is unknown
            if exc.status == 404:
                raise KeyError(what) from None
            if exc.status == 422:  # the CRD's schema or the API's validation refused the object
                raise GraphpackError(f"{what}: invalid (422): {reason}") from None
            if exc.status == 409 and body.get("reason") == "Conflict":
                raise GraphpackError(f"{what}: {conflict_line(body)}") from None
            raise GraphpackError(f"{what}: Kubernetes API answered {exc.status}: {reason}") from None
        except Exception as exc:  # urllib3 connection errors and the like
            if type(exc).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(exc, OSError):
                raise GraphpackError(f"{what}: cannot reach the Kubernetes API at {self.host}: "
                                     f"{unreachable(exc, self.timeout)}") from None
            raise

    def served(self, kind: str) -> bool:
        """Whether the cluster serves ``kind`` (its CRD is installed), from API discovery."""
        group, version, plural, _ = KINDS[kind]
        if kind not in self._served:
            try:
                found = self._call(f"discover {group}/{version}", self.custom.get_api_resources, group, version)
                self._served[kind] = any(r.name == plural for r in found.resources or [])
            except KeyError:  # the API group itself is unknown
                self._served[kind] = False
        return self._served[kind]

    def get(self, kind: str, name: str) -> dict | None:
        group, version, plural, _ = KINDS[kind]
        try:
            return self._call(f"get {kind} {name}", self.custom.get_namespaced_custom_object, group, version,
                              self.namespace, plural, name, kind=kind)
        except KeyError:
            return None

    def list(self, kind: str, selector: str) -> list[dict]:
        group, version, plural, _ = KINDS[kind]
        result = self._call(f"list {kind}", self.custom.list_namespaced_custom_object, group, version,
                            self.namespace, plural, label_selector=selector, kind=kind)
        return list(result.get("items") or [])

    def apply(self, manifest: dict, force: bool = False, dry_run: bool = False) -> dict:
        """Server-side apply as field manager ``graphpack``; a conflict with another manager's
        fields is an error unless ``force``; ``dry_run`` only validates (nothing is stored)."""
        group, version, plural, _ = KINDS[manifest["kind"]]
        name = manifest["metadata"]["name"]
        options: dict = {"field_manager": FIELD_MANAGER, "force": force}
        if dry_run:
            options["dry_run"] = "All"
        return self._call(f"apply {manifest['kind']} {name}", self.custom.patch_namespaced_custom_object,
                          group, version, self.namespace, plural, name, manifest, kind=manifest["kind"],
                          _content_type="application/apply-patch+yaml", **options)

    def delete(self, kind: str, name: str) -> bool:
        group, version, plural, _ = KINDS[kind]
        try:
            self._call(f"delete {kind} {name}", self.custom.delete_namespaced_custom_object, group, version,
                       self.namespace, plural, name, kind=kind)
        except KeyError:
            return False
        return True

    def logs(self, service: str) -> List[str]:
        """The log lines of the Service's pods (only the kubelet of a running pod has them)."""
        pods = self._call("list pods", self.core.list_namespaced_pod, self.namespace,
                          label_selector=f"serving.knative.dev/service={service}")
        if not pods.items:
            raise GraphpackError(f"no pods of Knative Service {service!r} in namespace {self.namespace!r} (scaled "
                                 "to zero, or not started yet): no logs to show")
        lines: list[str] = []
        for pod in pods.items:
            try:
                text = self._call(f"logs of {pod.metadata.name}", self.core.read_namespaced_pod_log,
                                  pod.metadata.name, self.namespace, container="function")
            except KeyError:  # the pod went away since the listing (scaled down)
                continue
            lines += [f"[{pod.metadata.name}] {line}" for line in str(text or "").splitlines()]
        return lines


class MemoryKube:
    """An in-memory KubeApi (public fake): objects by (kind, name); applied Services become Ready."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, ready: bool = True, kinds: tuple = tuple(KINDS)) -> None:
        self.namespace = namespace
        self.ready = ready
        self.kinds = set(kinds)  # the kinds the "cluster" serves
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []

    def get(self, kind: str, name: str) -> dict | None:
        obj = self.objects.get((kind, name))
        return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, selector: str) -> list[dict]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [copy.deepcopy(o) for (k, _), o in sorted(self.objects.items())
                if k == kind and all(o["metadata"].get("labels", {}).get(a) == b for a, b in wanted.items())]

    def served(self, kind: str) -> bool:
        return kind in self.kinds

    def apply(self, manifest: dict, force: bool = False, dry_run: bool = False) -> dict:
        obj = copy.deepcopy(manifest)
        name = obj["metadata"]["name"]
        if dry_run:
            return obj
        self.calls.append(("apply", manifest["kind"], name))
        if manifest["kind"] == "Service":
            status = "True" if self.ready else "False"
            obj["status"] = {"url": f"http://{name}.{self.namespace}.example.com",
                             "conditions": [{"type": "Ready", "status": status,
                                             **({} if self.ready else {"reason": "RevisionFailed",
                                                                       "message": "image pull failed"})}]}
        self.objects[(manifest["kind"], name)] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, name: str) -> bool:
        self.calls.append(("delete", kind, name))
        return self.objects.pop((kind, name), None) is not None

    def logs(self, service: str) -> List[str]:
        return []
