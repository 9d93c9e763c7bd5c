"""A real Kubernetes API server (etcd + kube-apiserver, no kubelet, no controllers) on 127.0.0.1.

Binaries, cached outside the repo under ``$GRAPHPACK_CACHE/kube/``:

- kube-apiserver v1.37.2, built from the ``k8s.io/kubernetes`` Go module: a small local module
  requires it and replaces each staging module (``k8s.io/<name>``) with its published ``v0.37.2``
  (``go install`` refuses a module with replace directives); ~10 minutes of both cores cold.
- etcd: Debian's ``etcd-server`` when installed (scripts/test.sh installs it), else built from
  ``go.etcd.io/etcd/server/v3`` (~1 minute).
- Knative's CRDs (Serving's ``config/core/300-resources``, eventing's PingSource) read from the
  module cache of the versions tests/knative/go.mod pins, so they match the Knative checker.

``python -m tests.plugins.kube_cluster`` prepares all of it (the test command's setup step; exit 0
ready, 3 unavailable with the reason). :func:`run_cluster` starts etcd and the API server with
certificates made by openssl, an admin token (group ``system:masters``) and a token without any
rights, installs the CRDs and yields a :class:`Cluster`; the pytest fixture is in tests/plugins/kube.py.
"""
from __future__ import annotations

import base64
import ctypes
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from tests.plugins.net import free_port

KUBE_VERSION = "v1.37.2"
ETCD_MODULE_VERSION = "v3.6.16"
KNATIVE_DIR = Path(__file__).resolve().parents[1] / "knative"
CACHE = Path(os.environ.get("GRAPHPACK_CACHE") or Path.home() / ".cache" / "graphpack")
HOME = CACHE / "kube"
APISERVER = HOME / f"kube-apiserver-{KUBE_VERSION}" / "kube-apiserver"
ETCD_BUILT = HOME / f"etcd-{ETCD_MODULE_VERSION}" / "etcd"
GO_TIMEOUT = 3600


class Unavailable(RuntimeError):
    """A part of the cluster cannot be had here (the message names the failure)."""


def go_env(gocache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOMODCACHE=str(CACHE / "go" / "mod"), GOCACHE=str(HOME / gocache), GOFLAGS="-mod=mod",
               CGO_ENABLED="0", GOTOOLCHAIN="local")
    return env


def _go(args: list[str], cwd: Path, env: dict[str, str], nice: bool = True) -> str:
    go = shutil.which("go")
    if go is None:
        raise Unavailable("no Go toolchain (`go`) on PATH to build the Kubernetes API server")
    cmd = (["nice", "-n", "10"] if nice else []) + [go, *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=GO_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise Unavailable(f"`go {' '.join(args)}` failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def _staging_modules(env: dict[str, str], work: Path) -> list[str]:
    """The k8s.io modules k8s.io/kubernetes replaces with ./staging directories."""
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{KUBE_VERSION}"], work, env, nice=False))
    if "GoMod" not in info:
        raise Unavailable(f"go mod download k8s.io/kubernetes@{KUBE_VERSION}: {info.get('Error', info)}")
    text = Path(info["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", text, re.M)))


def build_apiserver() -> Path:
    """kube-apiserver, built into the cache when missing (version stamped for kubectl)."""
    if APISERVER.exists():
        return APISERVER
    env = go_env("gocache-apiserver")
    work = APISERVER.parent / "module"
    work.mkdir(parents=True, exist_ok=True)
    minor = KUBE_VERSION.split(".")[1]
    staging = _staging_modules(env, work)
    replaces = "\n".join(f"\t{m} => {m} v0.{minor}.{KUBE_VERSION.split('.')[2]}" for m in staging)
    (work / "go.mod").write_text(f"module graphpack.test/kube-apiserver\n\ngo 1.26.0\n\n"
                                 f"require k8s.io/kubernetes {KUBE_VERSION}\n\nreplace (\n{replaces}\n)\n")
    (work / "tools.go").write_text('//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n')
    _go(["mod", "tidy"], work, env, nice=False)
    stamp = {"gitVersion": KUBE_VERSION, "gitMajor": "1", "gitMinor": minor, "gitCommit": "graphpack-module-build",
             "gitTreeState": "clean", "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ldflags = ["-s", "-w"] + [f"-X {pkg}.{k}={v}" for pkg in ("k8s.io/component-base/version",
                                                                "k8s.io/client-go/pkg/version") for k, v in stamp.items()]
    tmp = APISERVER.with_suffix(".tmp")
    _go(["build", "-trimpath", f"-ldflags={' '.join(ldflags)}", "-o", str(tmp), "k8s.io/kubernetes/cmd/kube-apiserver"],
        work, env)
    tmp.replace(APISERVER)
    return APISERVER


def etcd_binary() -> Path:
    """Debian's etcd when installed, else etcd built from its Go module into the cache."""
    for candidate in (shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return build_etcd()


def build_etcd() -> Path:
    """etcd built from its Go module into the cache when missing (~1 minute)."""
    if ETCD_BUILT.exists():
        return ETCD_BUILT
    env = go_env("gocache-etcd")
    work = ETCD_BUILT.parent / "module"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module graphpack.test/etcd\n\ngo 1.26.0\n")
    (work / "tools.go").write_text('//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n')
    _go(["get", f"go.etcd.io/etcd/server/v3@{ETCD_MODULE_VERSION}"], work, env, nice=False)
    tmp = ETCD_BUILT.with_suffix(".tmp")
    _go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "go.etcd.io/etcd/server/v3"], work, env)
    tmp.replace(ETCD_BUILT)
    return ETCD_BUILT


# -- Knative's CRDs -------------------------------------------------------------------------------
def _pinned(module: str) -> str:
    """The version of ``module`` tests/knative/go.mod requires."""
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", (KNATIVE_DIR / "go.mod").read_text(), re.M)
    if match is None:
        raise Unavailable(f"tests/knative/go.mod does not require {module}")
    return match.group(1)


def crd_files() -> list[Path]:
    """Knative Serving's CRDs and eventing's PingSource CRD, from the module cache (downloaded when
    missing) of the versions the Knative checker uses."""
    env = go_env("gocache-apiserver")
    dirs = {}
    for module in ("knative.dev/serving", "knative.dev/eventing"):
        info = json.loads(_go(["mod", "download", "-json", f"{module}@{_pinned(module)}"], HOME, env, nice=False))
        if "Dir" not in info:
            raise Unavailable(f"go mod download {module}: {info.get('Error', info)}")
        dirs[module] = Path(info["Dir"])
    serving = sorted((dirs["knative.dev/serving"] / "config" / "core" / "300-resources").glob("*.yaml"))
    return serving + [dirs["knative.dev/eventing"] / "config" / "core" / "resources" / "pingsource.yaml"]


def load_crds() -> list[dict]:
    import yaml

    crds = [doc for path in crd_files() for doc in yaml.safe_load_all(path.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"]
    for crd in crds:
        # Without Knative's controllers there is no eventing-webhook to convert between versions;
        # the PingSource CRD says its v1beta2 and v1 schemas are identical, so no conversion is
        # faithful (reads of a webhook-converted CRD otherwise fail with a StorageError).
        if crd["spec"].get("conversion", {}).get("strategy") == "Webhook":
            crd["spec"]["conversion"] = {"strategy": "None"}
    return crds


# -- a running cluster ----------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Unavailable(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_certs(directory: Path) -> None:
    """A CA, the API server's serving certificate (127.0.0.1, localhost) and a service-account key pair."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=graphpack-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=kube-apiserver", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=directory)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


class ApiError(Exception):
    def __init__(self, code: int, body: dict) -> None:
        super().__init__(f"{code}: {body.get('message', body)}")
        self.code, self.body = code, body


@dataclass
class Cluster:
    """A running API server: its URL, CA, tokens (admin: system:masters; nobody: no rights) and a
    small JSON client for test set-up (writing status, other field managers, CRDs)."""

    url: str
    ca: Path
    admin_token: str
    nobody_token: str
    home: Path

    def kubeconfig(self, path: Path, token: str | None = None, namespace: str | None = None) -> Path:
        """Write a kubeconfig for this cluster (admin unless ``token``) and return its path."""
        context: dict = {"cluster": "graphpack-test", "user": "user"}
        if namespace:
            context["namespace"] = namespace
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "graphpack-test",
            "clusters": [{"name": "graphpack-test", "cluster": {
                "server": self.url, "certificate-authority-data": base64.b64encode(self.ca.read_bytes()).decode()}}],
            "users": [{"name": "user", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "graphpack-test", "context": context}]}))
        return path

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                content_type: str = "application/json", timeout: float = 30.0) -> dict:
        """One API call as admin (or ``token``); the decoded answer, ApiError on a 4xx/5xx."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.admin_token}", "Content-Type": content_type,
            "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(req, context=context, timeout=timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = {"message": raw.decode(errors="replace")}
            raise ApiError(exc.code, decoded) from None
        return json.loads(text) if text.strip().startswith(b"{") else {"text": text.decode()}

    def apply(self, obj: dict, manager: str = "graphpack-test") -> dict:
        """Server-side apply of ``obj`` as ``manager``, taking over fields others own (force)."""
        return self.request("PATCH", self.path_of(obj) + f"?fieldManager={manager}&force=true", obj,
                            content_type="application/apply-patch+yaml")

    @staticmethod
    def path_of(obj: dict) -> str:
        group_version = obj["apiVersion"]
        plural = obj["kind"].lower() + ("es" if obj["kind"].endswith("s") else "s")
        if obj["kind"] == "CustomResourceDefinition":
            plural = "customresourcedefinitions"
        prefix = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        namespace = obj["metadata"].get("namespace")
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{prefix}{where}/{plural}/{obj['metadata']['name']}"

    def create_namespace(self, name: str) -> str:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def install_crds(self, crds: list[dict], timeout: float = 60.0) -> None:
        """Apply CRDs and wait until each is Established (served)."""
        deadline = time.monotonic() + timeout
        for crd in crds:
            while True:
                try:
                    self.apply(crd)
                    break
                except (ApiError, OSError) as exc:  # a server just started may still refuse a moment
                    if time.monotonic() > deadline or (isinstance(exc, ApiError) and exc.code < 429):
                        raise
                    time.sleep(0.2)
        for crd in crds:
            while True:
                current = self.request("GET", self.path_of(crd))
                conditions = {c["type"]: c["status"] for c in (current.get("status") or {}).get("conditions") or []}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {crd['metadata']['name']} not Established in {timeout:.0f}s")
                time.sleep(0.1)

    def write_ready(self, service: dict, ready: str = "True", reason: str = "", message: str = "") -> None:
        """Write a Knative Service's status as Knative's controller does once its revision is (not)
        ready: observedGeneration, the Ready condition and the URL."""
        meta = service["metadata"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = {"type": "Ready", "status": ready, "lastTransitionTime": now}
        if reason:
            condition.update(reason=reason, message=message)
        status = {"observedGeneration": meta["generation"], "url": f"http://{meta['name']}.{meta['namespace']}.example.com",
                  "conditions": [{"type": "ConfigurationsReady", "status": ready, "lastTransitionTime": now}, condition]}
        self.request("PATCH", self.path_of(service) + "/status", {"status": status},
                     content_type="application/merge-patch+json")

    @contextmanager
    def controller_stand_in(self, every: float = 0.2) -> Iterator[None]:
        """While inside: every Knative Service whose latest generation has no status yet is marked
        Ready, standing in for Knative's controller (which needs a kubelet to run the pods)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                try:
                    for item in self.request("GET", "/apis/serving.knative.dev/v1/services")["items"]:
                        if (item.get("status") or {}).get("observedGeneration") != item["metadata"]["generation"]:
                            self.write_ready(item)
                except (ApiError, OSError):
                    pass

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextmanager
    def kubelet_stand_in(self, node: str, logs: dict[str, str]) -> Iterator[list[str]]:
        """A Node whose kubelet is a small HTTPS server answering the API server's container-log
        requests (``/containerLogs/<namespace>/<pod>/<container>``: ``logs["<pod>/<container>"]``);
        no kubelet runs here (it needs a container runtime). Yields the paths requested."""
        seen: list[str] = []

        class Kubelet(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                seen.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                text = logs.get("/".join(parts[2:4])) if parts[0] == "containerLogs" else None
                body = (text if text is not None else "not found").encode()
                self.send_response(200 if text is not None else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Kubelet)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.home / "server.crt", self.home / "server.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            self.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
            self.request("PATCH", f"/api/v1/nodes/{node}/status", {"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": server.server_address[1]}}}},
                content_type="application/merge-patch+json")
            yield seen
        finally:
            server.shutdown()
            server.server_close()

    def delete_crd(self, name: str, timeout: float = 60.0) -> None:
        """Delete a CRD and wait until the server no longer has it."""
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        self.request("DELETE", path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.request("GET", path)
            except ApiError as exc:
                if exc.code == 404:
                    return
                raise
            time.sleep(0.1)
        raise RuntimeError(f"CRD {name} still there after {timeout:.0f}s")


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies without stopping it (Linux prctl); SIGTERM
    would leave the API server in a graceful shutdown that waits for the etcd dying beside it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)


def _wait(what: str, proc: subprocess.Popen, log: Path, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise Unavailable(f"{what} exited with {proc.returncode}: {' | '.join(tail)}")
        try:
            if check():
                return
        except (OSError, ApiError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise Unavailable(f"{what} not ready in {timeout:.0f}s (log: {log})")


def _etcd_healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
        return b'"true"' in answer.read()


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def run_cluster() -> Iterator[Cluster]:
    """etcd + kube-apiserver on free loopback ports, Knative's CRDs installed; stopped on exit.
    The binaries must be prepared already (``python -m tests.plugins.kube_cluster``, minutes cold):
    a test never waits for that build."""
    if not APISERVER.exists():
        raise Unavailable(f"kube-apiserver {KUBE_VERSION} is not built yet at {APISERVER}: run `python -m "
                          "tests.plugins.kube_cluster` (scripts/test.sh's kube step does; ~10 minutes cold)")
    apiserver, etcd = APISERVER, etcd_binary()
    crds = load_crds()
    home = Path(tempfile.mkdtemp(prefix="graphpack-kube-"))
    procs: list[subprocess.Popen] = []
    try:
        make_certs(home)
        admin, nobody = secrets.token_hex(16), secrets.token_hex(16)
        (home / "tokens.csv").write_text(f'{admin},admin,admin-uid,"system:masters"\n{nobody},nobody,nobody-uid\n')
        client, peer, secure = free_port(), free_port(), free_port()
        peer_url = f"http://127.0.0.1:{peer}"
        procs.append(_start([str(etcd), "--name", "default", "--data-dir", str(home / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{client}",
                             "--advertise-client-urls", f"http://127.0.0.1:{client}",
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"default={peer_url}"], home / "etcd.log"))
        _wait("etcd", procs[0], home / "etcd.log", lambda: _etcd_healthy(client), 60)
        procs.append(_start([
            str(apiserver), "--advertise-address=127.0.0.1", "--bind-address=127.0.0.1", f"--secure-port={secure}",
            f"--etcd-servers=http://127.0.0.1:{client}", f"--tls-cert-file={home / 'server.crt'}",
            f"--tls-private-key-file={home / 'server.key'}", f"--client-ca-file={home / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc", f"--service-account-key-file={home / 'sa.pub'}",
            f"--service-account-signing-key-file={home / 'sa.key'}", "--service-cluster-ip-range=10.0.0.0/24",
            f"--token-auth-file={home / 'tokens.csv'}", "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount", "--allow-privileged=true",
            # 1.37 refuses a loopback advertise address with the default endpoint reconciler
            "--endpoint-reconciler-type=none"], home / "apiserver.log"))
        cluster = Cluster(f"https://127.0.0.1:{secure}", home / "ca.crt", admin, nobody, home)
        _wait("kube-apiserver", procs[1], home / "apiserver.log",
              lambda: cluster.request("GET", "/readyz", timeout=5).get("text") == "ok", 120)
        cluster.install_crds(crds)
        yield cluster
    finally:
        _stop(procs)
        shutil.rmtree(home, ignore_errors=True)


def prepare() -> str:
    """Build or find everything the cluster needs; a one-line summary."""
    start = time.monotonic()
    cached = APISERVER.exists()
    if not cached:
        print(f"building kube-apiserver {KUBE_VERSION} from the k8s.io/kubernetes Go module into {APISERVER.parent} "
              "(about 10 minutes of both cores, once) ...", flush=True)
    apiserver = build_apiserver()
    took = time.monotonic() - start
    etcd = etcd_binary()
    crds = crd_files()
    built = "cached" if cached else f"built in {took:.0f}s (cold)"
    return f"kube-apiserver {KUBE_VERSION} {built}, etcd {etcd}, {len(crds)} Knative CRD files ({apiserver.parent})"


def main() -> int:
    try:
        print(prepare())
    except (Unavailable, subprocess.TimeoutExpired, OSError) as exc:
        print(f"the Kubernetes API server is unavailable: {exc}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
