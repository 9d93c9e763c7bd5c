"""The Knative target offline: manifests checked by Knative's own Go code and CRD schemas
(tests/knative), what Knative cannot express refused before anything changes, dry runs. Planning
and applying against a real Kubernetes API server are in test_knative_apiserver.py; MemoryKube
(the public in-memory fake) stands in here only where no server may be contacted."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import graphpack
from graphpack import GraphpackError
from graphpack.cli import main
from graphpack.packager.deploy import get_deployer
from graphpack.packager.deploy.knative import (
    KnativeDeployer,
    KubeApi,
    MemoryKube,
    service_state,
)
from graphpack.packager.images import FixedBuilder
from graphpack.packager.render import Images, render
from tests.knative import checker

ROOT_CODE = '''
class Pre:
    def do(self, body):
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


def make_project(directory: Path, extra=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(ROOT_CODE)
    (directory / "child.py").write_text(CHILD_CODE)
    project = graphpack.get_or_create_project("shop", str(directory))
    fn = project.set_function("serving.py", name="recommender")
    graph = fn.set_topology("flow", engine="async")
    graph.to(class_name="Pre", name="pre").respond().to(">>", "q1", path="s3://bucket/queues/q1") \
        .to(class_name="Score", name="score", function="scorer")
    fn.add_child_function("scorer", "child.py")
    fn.with_http(workers=4)
    fn.add_trigger("nightly", graphpack.CronTrigger(schedule="0 2 * * *", body={"op": "retrain"}))
    fn.add_trigger("tick", graphpack.CronTrigger(interval="5m", body="tick"))
    fn.set_env("MODE", "prod")
    fn.with_secrets("env", ["API_KEY"])
    fn.with_secrets("file", "/etc/graphpack/secrets.json")
    fn.spec.min_replicas, fn.spec.max_replicas = 1, 3
    fn.spec.resources = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    if extra:
        extra(fn)
    project.save()
    return project


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture(scope="module")
def knative_check():
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain (`go`) to build the Knative checker in tests/knative")
    return checker.build()


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def images():
    return Images(registry=REGISTRY, builder=FixedBuilder())


# -- manifests ------------------------------------------------------------------------------------
def test_rendered_manifests_pass_knative_validation_and_crd_schemas(project, tmp_path, knative_check):
    out = tmp_path / "manifests"
    result = CliRunner().invoke(main, ["render", "-f", str(tmp_path), "--target", "knative", "-o", str(out),
                                       "--registry", REGISTRY, "--builder", "fixed", "--namespace", "ml", "--build"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("*.yaml"))
    assert files == ["shop-recommender-scorer.yaml", "shop-recommender.yaml"]
    root = docs(out / "shop-recommender.yaml")
    assert [d["kind"] for d in root] == ["Service", "PingSource", "PingSource"]
    service = root[0]
    template = service["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"].startswith(f"{REGISTRY}/shop/recommender@sha256:")
    assert template["spec"]["containerConcurrency"] == 4
    assert template["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1",
                                                   "autoscaling.knative.dev/max-scale": "3",
                                                   "prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                                                   "prometheus.io/path": "/metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/__health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/__health"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["MODE"]["value"] == "prod"
    assert env["API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "shop-secrets", "key": "API_KEY"}}
    assert container["volumeMounts"][0]["mountPath"] == "/etc/graphpack/secrets.json"
    assert template["spec"]["volumes"][0]["secret"] == {"secretName": "shop-secrets"}
    assert container["resources"]["limits"] == {"memory": "1Gi"}
    pings = {d["metadata"]["name"]: d["spec"] for d in root[1:]}
    assert pings["shop-recommender-nightly"] == {
        "schedule": "0 2 * * *", "data": '{"op":"retrain"}', "contentType": "application/json",
        "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "shop-recommender",
                         "namespace": "ml"}}}
    assert pings["shop-recommender-tick"]["schedule"] == "*/5 * * * *"
    assert pings["shop-recommender-tick"]["data"] == "tick"
    child = docs(out / "shop-recommender-scorer.yaml")
    assert [d["kind"] for d in child] == ["Service"]
    child_env = {e["name"]: e.get("value") for e in child[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert child_env["GRAPHPACK_QUEUE_CONSUMER"] == "s3://bucket/queues/q1"
    # a queue consumer never scales to zero
    assert child[0]["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    # every rendered manifest passes Knative's SetDefaults + Validate and the CRD schemas
    check = checker.check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "4 checked, 0 failed" in check.stdout
    assert "(schema service.yaml)" in check.stdout and "(schema pingsource.yaml)" in check.stdout


def test_manifests_for_a_plain_function_pass_the_checker(tmp_path, knative_check):
    (tmp_path / "serving.py").write_text(ROOT_CODE)
    project = graphpack.get_or_create_project("plain", str(tmp_path))
    fn = project.set_function("serving.py", name="echo")
    fn.set_topology("flow").to(class_name="Pre", name="pre").respond()
    fn.with_http(workers=1, port=9000)
    out = tmp_path / "out"
    render(project, "knative", out, images=images())
    (service,) = docs(out / "plain-echo.yaml")
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http1", "containerPort": 9000, "protocol": "TCP"}]
    # Prometheus scrapes graphpack serve's /metrics on the function's port
    assert service["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "9000", "prometheus.io/path": "/metrics"}
    check = checker.check(out)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_turned_off_in_the_env_leave_no_scrape_annotations(tmp_path):
    (tmp_path / "serving.py").write_text(ROOT_CODE)
    project = graphpack.get_or_create_project("quiet", str(tmp_path))
    fn = project.set_function("serving.py", name="echo")
    fn.set_topology("flow").to(class_name="Pre", name="pre").respond()
    fn.set_env("GRAPHPACK_METRICS", "off")
    render(project, "knative", tmp_path / "out", images=images())
    (service,) = docs(tmp_path / "out" / "quiet-echo.yaml")
    assert not any(key.startswith("prometheus.io/") for key in service["spec"]["template"]["metadata"]["annotations"])


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"]["template"]["spec"].update(containerConcurrency=5000), "containerConcurrency"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolice="Always"), "imagePullPolice"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"].append({"containerPort": 9090}),
     "ports"),
    (lambda d: d["metadata"].update(name="Not_A_Name"), "name"),
])
def test_the_checker_rejects_what_knative_rejects(project, tmp_path, knative_check, mutate, expected):
    out = tmp_path / "out"
    render(project, "knative", out, images=images())
    path = out / "shop-recommender-scorer.yaml"
    (service,) = docs(path)
    mutate(service)
    path.write_text(yaml.safe_dump(service))
    check = checker.check(path)
    assert check.returncode == 1, check.stdout
    assert "FAIL" in check.stdout and expected in check.stdout


def test_the_checker_rejects_a_bad_ping_schedule(project, tmp_path, knative_check):
    out = tmp_path / "out"
    render(project, "knative", out, images=images())
    _, ping, _ = docs(out / "shop-recommender.yaml")
    ping["spec"]["schedule"] = "61 * * * *"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(ping))
    check = checker.check(path)
    assert check.returncode == 1 and "schedule" in check.stdout


@pytest.mark.parametrize("extra, message", [
    (lambda fn: fn.add_trigger("fast", graphpack.CronTrigger(interval="30s")),
     "trigger 'fast': interval '30s' cannot be a Knative PingSource schedule"),
    (lambda fn: fn.add_trigger("fast", graphpack.CronTrigger(schedule="*/10 * * * * *")),
     "trigger 'fast': schedule '*/10 * * * * *' cannot be a Knative PingSource schedule"),
    (lambda fn: fn.add_trigger("hdr", graphpack.CronTrigger(schedule="0 * * * *", body="x",
                                                            headers={"X-Op": "a"})),
     "trigger 'hdr': cron event headers ['X-Op'] cannot be sent by a Knative PingSource"),
    (lambda fn: fn.add_trigger("events", {"kind": "nats", "url": "nats://n:4222", "attributes": {"topic": "t"}}),
     "trigger 'events' of kind 'nats' cannot be deployed to Knative"),
])
def test_triggers_knative_cannot_express_fail_before_anything_changes(tmp_path, extra, message):
    project = make_project(tmp_path, extra)
    out = tmp_path / "out"
    builder = FixedBuilder()
    with pytest.raises(GraphpackError) as info:
        render(project, "knative", out, images=Images(registry=REGISTRY, builder=builder))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and builder.builds == []
    kube = MemoryKube()
    deployer = KnativeDeployer(tmp_path, api=kube, registry=REGISTRY, builder=builder)
    with pytest.raises(GraphpackError, match="cannot"):
        deployer.plan(project)
    assert kube.calls == []


def test_v3io_queue_is_refused(tmp_path):
    project = make_project(tmp_path)
    fn = project.get_function("recommender")
    fn.spec.graph.steps["q1"].path = "v3io://projects/shop/q1"
    fn.spec.min_replicas = fn.spec.max_replicas = 1
    with pytest.raises(GraphpackError, match="Knative has no v3io stream source"):
        render(project, "knative", tmp_path / "out", images=images())


def test_offline_render_writes_tags_and_says_what_is_left(tmp_path, knative_check):
    """render without --build contacts nothing: given tags and the tags deploy will push are written,
    with notes; Knative's own validation accepts tags (it resolves them when it creates a revision)."""
    project = make_project(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", "-f", str(tmp_path), "--target", "knative", "-o", str(out),
                                       "--image", "recommender=registry.test/shop/root:v1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    root = docs(out / "shop-recommender.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    child = docs(out / "shop-recommender-scorer.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert root["image"] == "registry.test/shop/root:v1"
    assert child["image"] == report["images"]["scorer"]["image"]
    assert child["image"].startswith("graphpack.local/shop/scorer:") and report["images"]["scorer"]["build"]
    notes = " ".join(report["notes"])
    assert "no registry to push the images of scorer" in notes and "resolves an image tag to a digest" in notes
    check = checker.check(out)
    assert check.returncode == 0, check.stdout + check.stderr
    with pytest.raises(GraphpackError, match="no registry to push the images of scorer, recommender"):
        render(project, "knative", tmp_path / "out2", images=Images(build=True))


# -- remote state -------------------------------------------------------------------------------
def test_service_state_from_conditions():
    assert service_state(None) == ("missing", "")
    assert service_state({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})[0] == "ready"
    failed = {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionMissing",
                                         "message": "image not found"}]}}
    assert service_state(failed) == ("failed", "RevisionMissing: image not found")
    stale = {"metadata": {"generation": 2}, "status": {"observedGeneration": 1,
                                                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert service_state(stale)[0] == "deploying"


def test_cli_deploy_dry_run_is_offline(project, tmp_path):
    """The dry run reads no cluster: its kubeconfig points at a closed port, and it still plans."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "closed",
        "clusters": [{"name": "closed", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "tok"}}],
        "contexts": [{"name": "closed", "context": {"cluster": "closed", "user": "u"}}]}))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "GRAPHPACK_REGISTRY": REGISTRY}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graphpack.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env=env, check=False)

    dry = run("deploy", "--target", "knative", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert [(s["action"], s["function"]) for s in plan["steps"]] == [("apply", "scorer"), ("apply", "recommender")]
    assert plan["steps"][1]["details"]["objects"] == [
        "Service default/shop-recommender", "PingSource default/shop-recommender-nightly",
        "PingSource default/shop-recommender-tick"]
    assert plan["steps"][1]["details"]["image"].startswith(f"{REGISTRY}/shop/recommender:")
    unknown = run("deploy", "--target", "kubernetes")
    assert unknown.returncode == 2 and "knative" in unknown.stderr and "nuclio" in unknown.stderr  # a usage error
    real = run("deploy", "--target", "knative")  # and the closed port is what a real deploy reports
    assert real.returncode == 1
    last = real.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in last


def test_a_cluster_that_never_answers_is_an_error_not_a_hang(project, tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        deployer = KnativeDeployer(tmp_path, registry=REGISTRY, builder=FixedBuilder(), host=url)
        deployer.api.timeout = 0.5
        with pytest.raises(GraphpackError, match=rf"cannot reach the Kubernetes API at {url}: no answer within 0.5 s$"):
            deployer.plan(project)


def test_get_deployer_knows_the_new_targets(tmp_path):
    deployer = get_deployer("knative", tmp_path, api=MemoryKube(), registry=REGISTRY)
    assert isinstance(deployer, KnativeDeployer) and deployer.status() == {}
    assert isinstance(KubeApi, type)


def test_api_dry_run_of_a_child_is_offline(project, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")  # loading it would fail: nothing may load it
    status = project.deploy_function("scorer", target="knative", dry_run=True)
    assert [(s.action, s.function) for s in status.plan.steps] == [("apply", "scorer")]
    assert status.plan.steps[0].details["objects"] == ["Service default/shop-recommender-scorer"]
    assert status.outputs == {}


def test_a_given_tag_is_pinned_to_the_digest_its_registry_serves(project, tmp_path):
    from graphpack.packager.images.baseimage import build_base
    from graphpack.packager.images.publish import push
    from graphpack.packager.images.testing import registry_available, run_registry

    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian docker-registry; scripts/test.sh installs it)")
    if not shutil.which("dpkg-deb") or not shutil.which("apt-get"):
        pytest.skip("the base image is built from Debian packages (dpkg-deb/apt-get missing)")
    with run_registry() as registry:
        tag = f"{registry.host}/shop/any:v1"
        with registry.client() as client:
            digest = push(build_base(), tag, client)
        kube = MemoryKube()
        messages: list[str] = []
        deployer = KnativeDeployer(tmp_path, api=kube, images={"recommender": tag, "scorer": tag})
        deployer.apply(deployer.plan(project), progress=messages.append)
    for name in ("shop-recommender", "shop-recommender-scorer"):
        container = kube.get("Service", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{registry.host}/shop/any@{digest}"
    assert f"image {tag} of recommender is {registry.host}/shop/any@{digest}" in messages
