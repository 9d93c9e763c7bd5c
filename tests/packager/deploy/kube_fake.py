"""A small recording fake of the Kubernetes API for the Knative apply path: a real HTTP server on
127.0.0.1 serving the calls graphpack makes (custom objects: get / list / server-side apply /
delete; pods and their logs), with the API server's response shapes (Status objects, List kinds,
metadata the server sets). Every request is recorded for assertions. A Service becomes Ready
unless its image is in ``missing_images`` (then Ready=False, as Knative reports a failed pull)."""
from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PLURAL_KIND = {"services": "Service", "pingsources": "PingSource"}


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "details": details or {}, "code": code}


class KubeFake:
    def __init__(self, token: str | None = None, missing_images: set[str] | None = None) -> None:
        self.token = token
        self.missing_images = set(missing_images or ())
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (group, plural, ns, name)
        self.requests: list[dict] = []
        self.pod_logs: dict[str, str] = {}
        self._lock = threading.Lock()
        self._rv = 1000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                record = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": json.loads(body) if body else None}
                fake.requests.append(record)
                code, payload, ctype = fake.handle(record)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KubeFake:  # noqa: PYI034
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- behaviour -----------------------------------------------------------------------------
    def handle(self, req: dict) -> tuple[int, object, str]:
        if self.token and req["headers"].get("authorization") != f"Bearer {self.token}":
            return 401, status(401, "Unauthorized", "Unauthorized"), "application/json"
        parts = req["path"].strip("/").split("/")
        with self._lock:
            if parts[:2] == ["api", "v1"]:
                return self._core(req, parts[2:])
            if parts[0] == "apis" and len(parts) >= 6 and parts[3] == "namespaces":
                group, version, ns, plural = parts[1], parts[2], parts[4], parts[5]
                if plural not in PLURAL_KIND:
                    return 404, status(404, "NotFound", "the server could not find the requested resource"), \
                        "application/json"
                name = parts[6] if len(parts) > 6 else None
                return self._custom(req, group, version, ns, plural, name)
        return 404, status(404, "NotFound", "the server could not find the requested resource"), "application/json"

    def _not_found(self, group: str, plural: str, name: str) -> tuple[int, object, str]:
        return 404, status(404, "NotFound", f'{plural}.{group} "{name}" not found',
                           {"name": name, "group": group, "kind": plural}), "application/json"

    def _custom(self, req: dict, group: str, version: str, ns: str, plural: str, name: str | None):
        key = (group, plural, ns, name or "")
        method = req["method"]
        if method == "GET" and name is None:
            selector = dict(p.split("=", 1) for p in (req["query"].get("labelSelector") or [""])[0].split(",") if p)
            items = [copy.deepcopy(o) for (g, p, n, _), o in sorted(self.objects.items())
                     if g == group and p == plural and n == ns
                     and all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
            return 200, {"apiVersion": f"{group}/{version}", "kind": PLURAL_KIND[plural] + "List",
                         "metadata": {"resourceVersion": str(self._rv)}, "items": items}, "application/json"
        if method == "GET":
            if key not in self.objects:
                return self._not_found(group, plural, name or "")
            return 200, copy.deepcopy(self.objects[key]), "application/json"
        if method == "PATCH":
            ctype = req["headers"].get("content-type", "")
            if ctype != "application/apply-patch+yaml":
                return 415, status(415, "UnsupportedMediaType", f"unsupported patch type {ctype}"), "application/json"
            if not req["query"].get("fieldManager"):
                return 400, status(400, "BadRequest", "PATCH requests with apply content type require a fieldManager"), \
                    "application/json"
            return self._apply(key, group, version, plural, req["body"], req["query"]["fieldManager"][0])
        if method == "DELETE":
            if key not in self.objects:
                return self._not_found(group, plural, name or "")
            obj = self.objects.pop(key)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": group, "kind": plural,
                                     "uid": obj["metadata"]["uid"]}}, "application/json"
        return 405, status(405, "MethodNotAllowed", "method not allowed"), "application/json"

    def _apply(self, key: tuple, group: str, version: str, plural: str, body: dict, manager: str):
        self._rv += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        existing = self.objects.get(key)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if existing is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now, generation=1)
            code = 201
        else:
            old = existing["metadata"]
            generation = old["generation"] + (existing.get("spec") != obj.get("spec"))
            meta.update(uid=old["uid"], creationTimestamp=old["creationTimestamp"], generation=generation)
            code = 200
        meta["resourceVersion"] = str(self._rv)
        meta["managedFields"] = [{"manager": manager, "operation": "Apply", "apiVersion": f"{group}/{version}",
                                  "time": now, "fieldsType": "FieldsV1"}]
        if plural == "services":
            image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            name = meta["name"]
            if image in self.missing_images:
                ready = {"type": "Ready", "status": "False", "reason": "RevisionMissing",
                         "message": f"Revision \"{name}-00001\" failed with message: Unable to fetch image "
                                    f"\"{image}\": failed to resolve image to digest: MANIFEST_UNKNOWN."}
            else:
                ready = {"type": "Ready", "status": "True", "lastTransitionTime": now}
            obj["status"] = {"observedGeneration": meta["generation"], "url": f"http://{name}.{key[2]}.example.com",
                             "latestReadyRevisionName": f"{name}-00001", "conditions": [
                                 {"type": "ConfigurationsReady", "status": ready["status"]}, ready,
                                 {"type": "RoutesReady", "status": ready["status"]}]}
        self.objects[key] = obj
        return code, copy.deepcopy(obj), "application/json"

    def _core(self, req: dict, parts: list[str]):
        # namespaces/{ns}/pods[/{name}/log]
        if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] == "pods":
            ns = parts[1]
            if len(parts) == 3:
                selector = (req["query"].get("labelSelector") or [""])[0]
                service = selector.split("=", 1)[1] if "=" in selector else ""
                items = [{"metadata": {"name": f"{service}-00001-deployment-abc", "namespace": ns,
                                       "labels": {"serving.knative.dev/service": service}}}
                         for (g, p, n, name) in self.objects if p == "services" and n == ns and name == service]
                return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}, "application/json"
            if len(parts) == 5 and parts[4] == "log":
                return 200, self.pod_logs.get(parts[3], "started\n"), "text/plain"
        return 404, status(404, "NotFound", "the server could not find the requested resource"), "application/json"

    def applies(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PATCH"]
