"""The Nuclio target: the planner against the in-memory dashboard, the REST client against a
local HTTP server speaking the dashboard's API, and (test_real_dashboard_*) the real Nuclio
1.14.1 dashboard with --platform local on the real Docker engine."""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import graphpack
from graphpack import GraphpackError
from graphpack.packager.deploy import get_deployer
from graphpack.packager.deploy.nuclio import Dashboard, MemoryDashboard, NuclioDeployer
from graphpack.packager.images import FixedBuilder
from graphpack.packager.render import Images, render

ROOT_CODE = '''
class Pre:
    def do(self, body):
        if isinstance(body, dict):
            body["pre"] = True
        return body
'''
CHILD_CODE = '''
class Score:
    def do(self, body):
        body["score"] = 1
        return body
'''
REGISTRY = "registry.test/shop"


def make_project(directory: Path, queue: str = "s3://bucket/queues/q1"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(ROOT_CODE)
    (directory / "child.py").write_text(CHILD_CODE)
    project = graphpack.get_or_create_project("shop", str(directory))
    fn = project.set_function("serving.py", name="recommender")
    graph = fn.set_topology("flow", engine="async")
    graph.to(class_name="Pre", name="pre").respond().to(">>", "q1", path=queue) \
        .to(class_name="Score", name="score", function="scorer")
    fn.add_child_function("scorer", "child.py")
    fn.add_trigger("nightly", graphpack.CronTrigger(schedule="0 2 * * *", body={"op": "retrain"}))
    project.save()
    return project


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def deployer_for(tmp_path, dashboard, **options):
    return NuclioDeployer(tmp_path, dashboard=dashboard, registry=REGISTRY, builder=FixedBuilder(), poll=0.01,
                          **options)


# -- planner (in-memory dashboard) ----------------------------------------------------------------
def test_plan_apply_keep_update_invoke_delete(project, tmp_path):
    dashboard = MemoryDashboard()
    deployer = deployer_for(tmp_path, dashboard)
    plan = deployer.plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("create", "scorer"), ("create", "recommender")]
    assert dashboard.calls == []
    status = deployer.apply(plan)
    assert dashboard.calls == [("create", "shop-recommender-scorer"), ("create", "shop-recommender")]
    assert dashboard.projects == {"shop"}
    assert {n: s["state"] for n, s in status.items()} == {"scorer": "ready", "recommender": "ready"}
    config = dashboard.functions["shop-recommender"]
    assert config["spec"]["image"].startswith(f"{REGISTRY}/shop/recommender@sha256:")
    assert "build" not in config["spec"]
    assert config["metadata"]["labels"]["nuclio.io/project-name"] == "shop"
    assert config["spec"]["triggers"]["nightly"]["attributes"]["schedule"] == "0 2 * * *"
    assert not deployer.plan(project).changes

    (tmp_path / "child.py").write_text(CHILD_CODE.replace("= 1", "= 2"))
    plan = deployer.plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("update", "scorer"), ("keep", "recommender")]
    deployer.apply(plan)
    assert dashboard.calls[-1] == ("update", "shop-recommender-scorer")

    result = deployer.invoke("recommender", "/", {"a": 1})
    assert result.ok and dashboard.calls[-1] == ("invoke", "shop-recommender")
    assert sorted(deployer.delete()) == ["recommender", "scorer"]
    assert dashboard.functions == {}
    assert [c for c in dashboard.calls if c[0] == "delete"] == [("delete", "shop-recommender"),
                                                                ("delete", "shop-recommender-scorer")]


def test_a_function_that_ends_in_error_fails_the_deploy_with_its_message(project, tmp_path):
    dashboard = MemoryDashboard(fail={"shop-recommender-scorer": "Function wasn't ready in time: ModuleNotFoundError"})
    deployer = deployer_for(tmp_path, dashboard)
    with pytest.raises(GraphpackError) as info:
        deployer.apply(deployer.plan(project))
    assert "Nuclio function 'shop-recommender-scorer' is error: Function wasn't ready in time" in str(info.value)
    assert ("create", "shop-recommender") not in dashboard.calls  # the root waits for its children
    # the next plan retries the failed child
    assert [(s.action, s.function) for s in deployer.plan(project).steps] == [
        ("update", "scorer"), ("create", "recommender")]


def test_name_clash_is_refused_before_anything_changes(project, tmp_path):
    dashboard = MemoryDashboard()
    dashboard.functions["shop-recommender"] = {"metadata": {"name": "shop-recommender",
                                                            "labels": {"nuclio.io/project-name": "other"}},
                                               "status": {"state": "ready"}}
    deployer = deployer_for(tmp_path, dashboard)
    with pytest.raises(GraphpackError, match="'shop-recommender' exists and was not deployed by graphpack"):
        deployer.plan(project)
    assert dashboard.calls == []


def test_local_platform_config_uses_the_host_network_and_one_port_per_function(project, tmp_path):
    dashboard = MemoryDashboard()
    deployer = deployer_for(tmp_path, dashboard, local_platform=True)
    plan = deployer.plan(project)
    assert {s.function: s.details["port"] for s in plan.steps} == {"scorer": 8180, "recommender": 8080}
    deployer.apply(plan)
    root = dashboard.functions["shop-recommender"]["spec"]
    assert root["platform"]["attributes"]["network"] == "host"
    http = next(t for t in root["triggers"].values() if t["kind"] == "http")
    assert http["attributes"]["disablePortPublishing"] is True and "port" not in http["attributes"]
    assert {"name": "PORT", "value": "8080"} in root["env"]
    child_env = dashboard.functions["shop-recommender-scorer"]["spec"]["env"]
    assert {"name": "PORT", "value": "8180"} in child_env
    assert deployer.status()["scorer"]["url"] == "http://127.0.0.1:8180"


def test_missing_image_source_and_unknown_function_are_clear(project, tmp_path):
    deployer = NuclioDeployer(tmp_path, dashboard=MemoryDashboard())
    with pytest.raises(GraphpackError, match="no registry to push the images of scorer, recommender to for target 'nuclio'"):
        deployer.plan(project)
    with pytest.raises(GraphpackError, match="function 'nope' is not deployed"):
        deployer.invoke("nope")


def test_render_nuclio_writes_dashboard_ready_configs(project, tmp_path):
    out = tmp_path / "out"
    refs = {"recommender": "registry.test/shop/root:v1", "scorer": "registry.test/shop/scorer:v1"}
    files = render(project, "nuclio", out, images=Images(refs), namespace="nuclio")
    assert sorted(p.name for p in files) == ["shop-recommender-scorer.yaml", "shop-recommender.yaml"]
    config = yaml.safe_load((out / "shop-recommender.yaml").read_text())
    assert config["metadata"]["namespace"] == "nuclio"
    assert config["spec"]["image"] == "registry.test/shop/root:v1"
    assert config["spec"]["runtime"] == "python:3.11" and config["spec"]["handler"] == "graphpack_entry:handler"


# -- the REST client against a server speaking the dashboard API ----------------------------------
class DashboardStub:
    """A local HTTP server answering like the dashboard: records requests, answers per rules."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.functions: dict[str, dict] = {}
        self.answer: dict[tuple[str, str], tuple[int, object]] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                code, payload = stub.respond(self.command, self.path, body, self.headers)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def respond(self, method: str, path: str, body: object, headers: object) -> tuple[int, object]:
        if (method, path) in self.answer:
            return self.answer[(method, path)]
        if method == "GET" and path == "/api/projects":
            return 200, {}
        if method == "POST" and path == "/api/projects":
            return 201, body
        if method == "POST" and path == "/api/functions":
            name = body["metadata"]["name"]
            if name in self.functions:
                return 409, {"error": f"Function name is already in use: {name}"}
            self.functions[name] = {**body, "status": {"state": "ready", "logs": [
                {"time": 1, "level": "info", "message": "Deploying function", "name": "deployer"}]}}
            return 202, None
        if method == "GET" and path.startswith("/api/functions/"):
            name = path.rsplit("/", 1)[1]
            if name not in self.functions:
                return 404, {"error": "Function not found"}
            return 200, self.functions[name]
        if method == "DELETE" and path == "/api/functions":
            self.functions.pop(body["metadata"]["name"], None)
            return 204, None
        if path == "/api/function_invocations":
            return 200, {"invoked": headers.get("X-Nuclio-Function-Name"), "path": headers.get("X-Nuclio-Path"),
                         "body": body}
        return 404, {"error": "not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    server = DashboardStub()
    yield server
    server.close()


def test_rest_client_headers_auth_invocation_and_errors(project, tmp_path, stub):
    deployer = NuclioDeployer(tmp_path, url=stub.url, registry=REGISTRY, builder=FixedBuilder(), poll=0.01,
                              username="admin", password="pw", namespace="nuclio")
    deployer.apply(deployer.plan(project))
    posts = [r for r in stub.requests if r["method"] == "POST" and r["path"] == "/api/functions"]
    assert [p["body"]["metadata"]["name"] for p in posts] == ["shop-recommender-scorer", "shop-recommender"]
    for post in posts:
        assert post["headers"]["x-nuclio-project-name"] == "shop"
        assert post["headers"]["x-nuclio-function-namespace"] == "nuclio"
        assert post["headers"]["authorization"] == "Basic YWRtaW46cHc="  # admin:pw
        assert post["body"]["metadata"]["namespace"] == "nuclio"
    result = deployer.invoke("recommender", "/predict", {"x": 1})
    assert result.body == {"invoked": "shop-recommender", "path": "/predict", "body": {"x": 1}}

    # the dashboard's errors, one line each
    stub.answer[("GET", "/api/functions/shop-recommender")] = (401, {"error": "Unauthorized"})
    with pytest.raises(GraphpackError, match=r"rejected the credentials \(401\)"):
        deployer.plan(project)
    stub.answer[("GET", "/api/functions/shop-recommender")] = (500, {"error": "Failed to get function"})
    with pytest.raises(GraphpackError, match="the Nuclio dashboard answered 500: Failed to get function"):
        deployer.status()
    del stub.answer[("GET", "/api/functions/shop-recommender")]
    client = Dashboard(stub.url)
    with pytest.raises(GraphpackError, match=r"conflict \(409\): Function name is already in use"):
        client.create({"metadata": {"name": "shop-recommender"}, "spec": {}}, "shop")
    assert client.get("absent") is None
    with pytest.raises(GraphpackError, match=r"update function absent: it no longer exists \(404\)"):
        client.update({"metadata": {"name": "absent"}, "spec": {}}, "shop")


def test_cli_dry_run_is_offline_and_changes_nothing(project, tmp_path, stub):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUCLIO_DASHBOARD_URL": stub.url, "GRAPHPACK_REGISTRY": REGISTRY}
    done = subprocess.run([sys.executable, "-m", "graphpack.cli", "deploy", "--target", "nuclio", "--dry-run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["plan for project 'shop' on target 'nuclio':", "  apply    scorer  (create or update)"]
    assert lines[2].split()[:4] == ["image:", "build", "and", "push"]
    assert lines[2].split()[4].startswith(f"{REGISTRY}/shop/scorer:")
    assert "apply: Nuclio function shop-recommender-scorer (project shop)" in done.stdout
    assert f"the Nuclio dashboard at {stub.url} was not contacted" in done.stdout
    assert stub.requests == []  # offline: the dashboard is not asked anything


def test_access_key_header_and_unreachable_dashboard(project, tmp_path, stub):
    client = Dashboard(stub.url, access_key="key-123")
    client.get("x")
    assert stub.requests[-1]["headers"]["x-v3io-session-key"] == "key-123"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    deployer = NuclioDeployer(tmp_path, url=f"http://127.0.0.1:{port}", registry=REGISTRY, builder=FixedBuilder())
    with pytest.raises(GraphpackError, match=f"cannot reach the Nuclio dashboard at http://127.0.0.1:{port}"):
        deployer.plan(project)


def test_get_deployer_knows_nuclio(tmp_path):
    deployer = get_deployer("nuclio", tmp_path, dashboard=MemoryDashboard())
    assert isinstance(deployer, NuclioDeployer) and deployer.status() == {}


# -- the real Nuclio 1.14.1 dashboard, --platform local, real Docker engine -----------------------
SCORER_CODE = '''
import json, os

class Score:
    def do(self, body):
        body["score"] = 1
        with open(os.path.join(os.environ["OUT_DIR"], "scored.jsonl"), "a") as f:
            f.write(json.dumps(body) + "\\n")
        return body
'''


@pytest.fixture(scope="module")
def real_dashboard(tmp_path_factory):
    from tests.packager.deploy import nuclio_dashboard

    try:
        nuclio_dashboard.docker_ok()
        nuclio_dashboard.obtain()
        nuclio_dashboard.store_image()
    except nuclio_dashboard.Unavailable as exc:
        pytest.skip(f"real Nuclio dashboard: {exc}")
    logs = tmp_path_factory.mktemp("dashboard")
    with nuclio_dashboard.running_dashboard(logs) as url:
        yield url, logs / "dashboard.log"


@pytest.fixture(scope="module")
def registry():
    from graphpack.packager.images.testing import registry_available, run_registry

    if not registry_available():
        pytest.skip("docker-registry (Debian package) is not installed")
    with run_registry() as running:
        yield running


def wait_port_free(port: int, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.2)
    raise AssertionError(f"port {port} stays in use: the local platform's invocation needs it for the root")


def test_real_dashboard_deploys_invokes_and_deletes_root_and_child(real_dashboard, registry, tmp_path):
    import time

    from graphpack.packager.images.docker_engine import DockerBuilder

    url, dashboard_log = real_dashboard
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # the functions run as uid 10001
    project = make_project(tmp_path / "src", queue=str(shared / "q1"))
    (tmp_path / "src" / "child.py").write_text(SCORER_CODE)
    project.get_function("recommender").set_env("OUT_DIR", str(shared))
    project.save()
    wait_port_free(8080)
    deployer = NuclioDeployer(tmp_path / "src", url=url, registry=f"{registry.host}/shop",
                              builder=DockerBuilder(registry=registry.client()), local_platform=True,
                              host_paths=(str(shared),), ready_timeout=180, poll=0.2)
    plan = deployer.plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("create", "scorer"), ("create", "recommender")]
    status = deployer.apply(plan)
    assert {n: s["state"] for n, s in status.items()} == {"scorer": "ready", "recommender": "ready"}

    # the root through the dashboard's /api/function_invocations, the child directly on its port
    result = deployer.invoke("recommender", "/", {"n": 1})
    assert result.status_code == 200 and result.body == {"n": 1, "pre": True}
    assert '"requestPath": "/api/function_invocations"' in dashboard_log.read_text(errors="replace")
    health = deployer.invoke("scorer", "/__health")  # reachable directly on its own port
    assert health.status_code == 200, health
    # the root's queue (a host directory both containers mount) reaches the child's consumer
    scored = shared / "scored.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (scored.exists() and '"n": 1' in scored.read_text()):
        time.sleep(0.2)
    assert {"n": 1, "pre": True, "score": 1} in [json.loads(line) for line in scored.read_text().splitlines()]

    # the dashboard keeps graphpack's labels and digest: an unchanged project plans no change
    assert not deployer.plan(project).changes
    # a code change updates (PUT) only the root, in place
    (tmp_path / "src" / "serving.py").write_text(ROOT_CODE.replace('body["pre"] = True', 'body["pre"] = 2'))
    plan = deployer.plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("keep", "scorer"), ("update", "recommender")]
    deployer.apply(plan)
    assert deployer.invoke("recommender", "/", {"n": 3}).body == {"n": 3, "pre": 2}
    assert any("Function deploy complete" in line for line in deployer.logs("recommender"))

    # an image that is not in the registry is refused before anything changes
    missing = f"{registry.host}/shop/missing@sha256:" + "1" * 64
    other = NuclioDeployer(tmp_path / "src", url=url, images={"recommender": missing, "scorer": missing},
                           local_platform=True)
    with pytest.raises(GraphpackError, match="image .*missing.* of function 'recommender' is not usable"):
        other.plan(project)

    assert sorted(deployer.delete()) == ["recommender", "scorer"]
    assert Dashboard(url).get("shop-recommender") is None and Dashboard(url).get("shop-recommender-scorer") is None
    import subprocess

    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=nuclio.io/function-name=shop-recommender"],
                          capture_output=True, text=True, check=False).stdout.split()
    assert left == []


def test_real_dashboard_reports_a_function_that_cannot_start(real_dashboard, registry, tmp_path):
    from graphpack.packager.images.docker_engine import DockerBuilder

    url, _ = real_dashboard
    (tmp_path / "serving.py").write_text("class Pre:\n    def __init__(self, context=None, name=None):\n"
                                         "        raise RuntimeError('cannot start: model file missing')\n"
                                         "    def do(self, body):\n        return body\n")
    project = graphpack.get_or_create_project("broken", str(tmp_path))
    fn = project.set_function("serving.py", name="echo")
    fn.set_topology("flow").to(class_name="Pre", name="pre").respond()
    wait_port_free(8080)
    deployer = NuclioDeployer(tmp_path, url=url, registry=f"{registry.host}/broken",
                              builder=DockerBuilder(registry=registry.client()), local_platform=True,
                              ready_timeout=240, poll=0.2)
    plan = deployer.plan(project)
    try:
        with pytest.raises(GraphpackError) as info:
            deployer.apply(plan)
        first = str(info.value).splitlines()[0]
        assert first.startswith("Nuclio function 'broken-echo' is ") and ("error" in first or "unhealthy" in first)
        assert "cannot start: model file missing" in str(info.value)  # the container's log says why
    finally:
        Dashboard(url).delete("broken-echo")
