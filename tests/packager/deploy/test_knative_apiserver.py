"""The Knative target against a real Kubernetes API server (etcd + kube-apiserver v1.37.2 with
Knative's CRDs, tests/plugins/kube_cluster.py): server-side apply, field managers and conflicts,
CRD schemas, RBAC, deletes by label, and readiness as the Knative controller would write it.

No Knative controller runs here (it needs a kubelet and a network to run pods): where a test needs
a Service's status, it writes the status subresource itself, as the controller would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from graphpack import GraphpackError
from graphpack.packager.deploy.knative import KnativeDeployer, manifests
from graphpack.packager.images import FixedBuilder
from graphpack.packager.render import Images, render
from tests.plugins.kube_cluster import ApiError, Cluster

from .test_knative import CHILD_CODE, REGISTRY, ROOT_CODE, make_project
from .test_knative_kafka import kafka_project

SERVICES = "/apis/serving.knative.dev/v1/namespaces/{ns}/services"
PINGS = "/apis/sources.knative.dev/v1/namespaces/{ns}/pingsources"


def deployer_for(tmp_path: Path, cluster: Cluster, namespace: str, token: str | None = None,
                 **options) -> KnativeDeployer:
    kubeconfig = cluster.kubeconfig(tmp_path / f"kubeconfig-{token or 'admin'}", token)
    options.setdefault("wait", False)
    options.setdefault("builder", FixedBuilder())
    return KnativeDeployer(tmp_path, namespace=namespace, registry=REGISTRY, kubeconfig=str(kubeconfig), **options)


def objects(cluster: Cluster, namespace: str) -> dict[str, dict]:
    """Every Knative Service and PingSource in the namespace, by "Kind/name"."""
    out = {}
    for path in (SERVICES, PINGS):
        for item in cluster.request("GET", path.format(ns=namespace))["items"]:
            out[f"{item['kind']}/{item['metadata']['name']}"] = item
    return out


def versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    return {key: obj["metadata"]["resourceVersion"] for key, obj in objects(cluster, namespace).items()}


def container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def when_applied(cluster: Cluster, namespace: str, name: str, then, generation: int = 1) -> threading.Thread:
    """Run ``then(service)`` in a thread once the Service reaches ``generation``, as Knative's
    controller reacts to a new revision (no controller runs here)."""
    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                obj = cluster.request("GET", SERVICES.format(ns=namespace) + f"/{name}")
                if obj["metadata"]["generation"] >= generation:
                    then(obj)
                    return
            except ApiError:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


# -- create, update in place, nothing to change, delete ---------------------------------------------
def test_create_update_in_place_keep_and_delete_only_what_graphpack_made(kube_cluster, kube_namespace, tmp_path):
    ns = kube_namespace
    project = make_project(tmp_path)
    # neighbours graphpack did not create: a Service, and a PingSource of another project
    kube_cluster.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": "hand-made", "namespace": ns},
                        "spec": {"template": {"spec": {"containers": [{"image": "registry.test/other@sha256:"
                                                                       + "1" * 64}]}}}}, manager="kubectl")
    kube_cluster.apply({"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
                        "metadata": {"name": "shop-recommender-other", "namespace": ns,
                                     "labels": {"graphpack.io/project": "other", "graphpack.io/function": "recommender"}},
                        "spec": {"schedule": "* * * * *", "sink": {"uri": "http://example.com"}}}, manager="kubectl")
    neighbours = versions(kube_cluster, ns)

    builder = FixedBuilder()
    deployer = deployer_for(tmp_path, kube_cluster, ns, builder=builder)
    plan = deployer.plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("create", "scorer"), ("create", "recommender")]
    assert versions(kube_cluster, ns) == neighbours and builder.builds == []  # planning changes and builds nothing
    status = deployer.apply(plan)
    assert {k: v["state"] for k, v in status.items()} == {"scorer": "deploying", "recommender": "deploying"}
    found = objects(kube_cluster, ns)
    assert sorted(found) == ["PingSource/shop-recommender-nightly", "PingSource/shop-recommender-other",
                             "PingSource/shop-recommender-tick", "Service/hand-made", "Service/shop-recommender",
                             "Service/shop-recommender-scorer"]
    # children first: the order of the server's (etcd) revisions is the order of the writes
    order = sorted(found, key=lambda key: int(found[key]["metadata"]["resourceVersion"]))
    assert [k for k in order if k not in neighbours] == [
        "Service/shop-recommender-scorer", "Service/shop-recommender", "PingSource/shop-recommender-nightly",
        "PingSource/shop-recommender-tick"]
    root = found["Service/shop-recommender"]
    assert [(m["manager"], m["operation"]) for m in root["metadata"]["managedFields"]] == [("graphpack", "Apply")]
    assert container(root)["image"].startswith(f"{REGISTRY}/shop/recommender@sha256:")
    assert root["metadata"]["labels"]["graphpack.io/project"] == "shop"
    # what the server stored is what graphpack rendered: the CRD schema pruned nothing
    context = next(c for c in plan.artifacts if c.plan.function == "recommender")
    sent = manifests(context, container(root)["image"], ns)
    assert root["spec"] == sent[0]["spec"]
    assert found["PingSource/shop-recommender-nightly"]["spec"] == sent[1]["spec"]

    # a second run with nothing changed writes nothing
    before = versions(kube_cluster, ns)
    again = deployer.plan(project)
    assert [s.action for s in again.steps] == ["keep", "keep"] and not again.changes
    deployer.apply(again)
    assert versions(kube_cluster, ns) == before

    # a code change: a new digest, a new revision template on the same Service (in place)
    (tmp_path / "child.py").write_text(CHILD_CODE.replace("= 1", "= 2"))
    plan = deployer.plan(project)
    assert [(s.action, s.function, s.reason) for s in plan.steps] == [
        ("update", "scorer", "code or config changed"), ("keep", "recommender", "deploying at None")]
    old = objects(kube_cluster, ns)["Service/shop-recommender-scorer"]
    deployer.apply(plan)
    new = objects(kube_cluster, ns)["Service/shop-recommender-scorer"]
    assert new["metadata"]["uid"] == old["metadata"]["uid"]
    assert new["metadata"]["generation"] == old["metadata"]["generation"] + 1
    assert container(new)["image"] != container(old)["image"]
    assert new["metadata"]["annotations"]["graphpack.io/digest"] != old["metadata"]["annotations"]["graphpack.io/digest"]
    after = versions(kube_cluster, ns)
    assert after["Service/shop-recommender"] == before["Service/shop-recommender"]  # the root was not touched

    # a cron trigger removed from the graph: its PingSource goes on the next apply, nothing else does
    del project.get_function("recommender").spec.triggers["tick"]
    plan = deployer.plan(project)
    assert [(s.action, s.reason, s.details.get("stale_pings")) for s in plan.steps] == [
        ("keep", "deploying at None", None), ("update", "code or config changed", ["shop-recommender-tick"])]
    deployer.apply(plan)
    assert "PingSource/shop-recommender-tick" not in objects(kube_cluster, ns)
    assert "PingSource/shop-recommender-other" in objects(kube_cluster, ns)

    assert sorted(deployer.delete()) == ["recommender", "scorer"]
    assert versions(kube_cluster, ns) == neighbours  # only graphpack's objects went, the others are untouched
    assert deployer.status() == {}


def test_a_service_graphpack_did_not_deploy_is_never_taken_over(kube_cluster, kube_namespace, tmp_path):
    kube_cluster.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": "shop-recommender", "namespace": kube_namespace},
                        "spec": {"template": {"spec": {"containers": [{"image": "registry.test/x@sha256:"
                                                                       + "4" * 64}]}}}}, manager="kubectl")
    before = versions(kube_cluster, kube_namespace)
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace)
    with pytest.raises(GraphpackError, match=rf"^Knative Service 'shop-recommender' in namespace '{kube_namespace}' "
                                             r"exists and was not deployed by graphpack for shop/recommender: "):
        deployer.plan(make_project(tmp_path))
    assert versions(kube_cluster, kube_namespace) == before


def test_delete_leaves_an_object_graphpack_did_not_make(kube_cluster, kube_namespace, tmp_path):
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace)
    deployer.apply(deployer.plan(project, ["scorer"]))
    path = SERVICES.format(ns=kube_namespace) + "/shop-recommender-scorer"
    # someone replaced the Service with their own under the same name
    kube_cluster.request("DELETE", path)
    kube_cluster.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": "shop-recommender-scorer", "namespace": kube_namespace},
                        "spec": {"template": {"spec": {"containers": [{"image": "registry.test/x@sha256:"
                                                                       + "2" * 64}]}}}}, manager="kubectl")
    with pytest.raises(GraphpackError) as info:
        deployer.delete()
    assert "Service 'shop-recommender-scorer'" in str(info.value) and "left alone" in str(info.value)
    assert "\n" not in str(info.value)
    assert kube_cluster.request("GET", path)["metadata"]["managedFields"][0]["manager"] == "kubectl"


# -- field managers ---------------------------------------------------------------------------------
def test_a_conflict_with_another_field_manager_is_one_line_unless_forced(kube_cluster, kube_namespace, tmp_path):
    ns = kube_namespace
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, ns)
    deployer.apply(deployer.plan(project))
    # an operator pins the root's image by hand (kubectl apply --server-side --force-conflicts)
    theirs = "registry.test/hotfix@sha256:" + "3" * 64
    kube_cluster.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": "shop-recommender", "namespace": ns},
                        "spec": {"template": {"spec": {"containers": [{"name": "function", "image": theirs}]}}}},
                       manager="kubectl")
    (tmp_path / "serving.py").write_text(ROOT_CODE.replace("True", "'yes'"))
    (tmp_path / "child.py").write_text(CHILD_CODE.replace("= 1", "= 2"))
    before = versions(kube_cluster, ns)
    plan = deployer.plan(project)
    assert [s.action for s in plan.steps] == ["update", "update"]
    with pytest.raises(GraphpackError) as info:
        deployer.apply(plan)
    message = str(info.value)
    assert message.startswith("apply Service shop-recommender: field(s) .spec.template.spec.containers are "
                              "managed by kubectl (409 conflict)"), message
    assert "--force" in message and "\n" not in message
    assert versions(kube_cluster, ns) == before  # nothing changed, not even the child applied before it

    forced = deployer_for(tmp_path, kube_cluster, ns, force=True)
    forced.apply(forced.plan(project))
    root = objects(kube_cluster, ns)["Service/shop-recommender"]
    assert container(root)["image"].startswith(f"{REGISTRY}/shop/recommender@sha256:")
    owners = {m["manager"] for m in root["metadata"]["managedFields"] if "spec" in json.dumps(m["fieldsV1"])}
    assert owners == {"graphpack"}  # forcing moved the containers list back to graphpack


# -- what the cluster lacks or refuses --------------------------------------------------------------
def test_a_missing_crd_is_an_error_naming_it_before_anything_changes(kube_cluster, kube_namespace, tmp_path):
    # Knative's Kafka source is not installed on this cluster (as on any cluster without it)
    project = kafka_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace)
    with pytest.raises(GraphpackError) as info:
        deployer.plan(project)
    assert str(info.value) == (f"the Kubernetes API at {kube_cluster.url} does not serve KafkaSource "
                               "(sources.knative.dev/v1): the CRD kafkasources.sources.knative.dev is not installed; "
                               "install Knative's Kafka source (eventing-kafka-broker)")
    assert objects(kube_cluster, kube_namespace) == {}


def test_a_cluster_without_knative_eventing_names_the_pingsource_crd(kube_cluster, kube_namespace, tmp_path):
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace)
    crd = kube_cluster.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                               "pingsources.sources.knative.dev")
    kube_cluster.delete_crd("pingsources.sources.knative.dev")
    try:
        with pytest.raises(GraphpackError, match=r"does not serve PingSource \(sources.knative.dev/v1\): the CRD "
                                                 r"pingsources.sources.knative.dev is not installed; install Knative "
                                                 r"Eventing$"):
            deployer.plan(project)
        deployer.apply(deployer.plan(project, ["scorer"]))  # a function without cron triggers needs no Eventing
        services = kube_cluster.request("GET", SERVICES.format(ns=kube_namespace))["items"]
        assert [s["metadata"]["name"] for s in services] == ["shop-recommender-scorer"]
        assert deployer.delete() == ["scorer"] and not kube_cluster.request("GET", SERVICES.format(ns=kube_namespace))["items"]
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            crd["metadata"].pop(key, None)
        crd.pop("status", None)
        kube_cluster.install_crds([crd])


def test_an_object_the_crd_schema_refuses_is_one_line_and_changes_nothing(kube_cluster, kube_namespace, tmp_path):
    def bad_cpu(fn):
        fn.spec.resources = {"limits": {"cpu": "lots"}}

    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace)
    with pytest.raises(GraphpackError) as info:
        deployer.apply(deployer.plan(make_project(tmp_path, bad_cpu)))
    message = str(info.value)
    assert message.startswith("apply Service shop-recommender-scorer: invalid (422): Service.serving.knative.dev "
                              '"shop-recommender-scorer" is invalid: spec.template.spec.containers[0].resources.limits'
                              '.cpu: Invalid value: "lots"'), message
    assert "\n" not in message and objects(kube_cluster, kube_namespace) == {}


def test_a_namespace_that_does_not_exist_is_one_line(kube_cluster, tmp_path):
    deployer = deployer_for(tmp_path, kube_cluster, "no-such-namespace")
    plan = deployer.plan(make_project(tmp_path))  # reads find nothing there
    with pytest.raises(GraphpackError) as info:
        deployer.apply(plan)
    assert str(info.value) == (f"apply Service shop-recommender-scorer: namespace 'no-such-namespace' does not exist "
                               f"in the cluster at {kube_cluster.url}: create it, or choose another with "
                               "$GRAPHPACK_NAMESPACE")


def test_rbac_denial_is_a_clear_error_and_changes_nothing(kube_cluster, kube_namespace, tmp_path):
    ns = kube_namespace
    project = make_project(tmp_path)
    nobody = deployer_for(tmp_path, kube_cluster, ns, token=kube_cluster.nobody_token)
    with pytest.raises(GraphpackError) as info:
        nobody.plan(project)
    assert str(info.value).startswith(f"get Service shop-recommender-scorer: forbidden (403) for the kubeconfig's "
                                      f"user in namespace '{ns}': ")
    assert 'User "nobody" cannot get resource "services"' in str(info.value) and "\n" not in str(info.value)
    # allowed to read but not to write: the plan works, the apply is refused before anything changes
    rules = [{"apiGroups": ["serving.knative.dev", "sources.knative.dev"], "resources": ["services", "pingsources"],
              "verbs": ["get", "list"]}]
    kube_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": "reader", "namespace": ns}, "rules": rules})
    kube_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": "reader", "namespace": ns},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
                        "subjects": [{"kind": "User", "name": "nobody", "apiGroup": "rbac.authorization.k8s.io"}]})
    deadline = time.monotonic() + 30
    while True:  # RBAC changes reach the authorizer through an informer: a moment later
        try:
            plan = nobody.plan(project)
            break
        except GraphpackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with pytest.raises(GraphpackError, match=r"^apply Service shop-recommender-scorer: forbidden \(403\).*"
                                             r'cannot patch resource "services"'):
        nobody.apply(plan)
    assert objects(kube_cluster, ns) == {}


def test_the_namespace_is_the_kubeconfig_contexts_unless_given(kube_cluster, kube_namespace, tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHPACK_NAMESPACE", raising=False)
    kubeconfig = kube_cluster.kubeconfig(tmp_path / "kubeconfig", namespace=kube_namespace)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    deployer = KnativeDeployer(tmp_path, registry=REGISTRY, builder=FixedBuilder(), wait=False)
    assert deployer.namespace == kube_namespace
    deployer.apply(deployer.plan(make_project(tmp_path), ["scorer"]))
    assert list(objects(kube_cluster, kube_namespace)) == ["Service/shop-recommender-scorer"]
    monkeypatch.setenv("GRAPHPACK_NAMESPACE", "elsewhere")
    assert KnativeDeployer(tmp_path).namespace == "elsewhere"
    monkeypatch.delenv("GRAPHPACK_NAMESPACE")
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig(tmp_path / "other", namespace="other")))
    assert KnativeDeployer(tmp_path).namespace == kube_namespace  # where the project is deployed


def test_wrong_credentials_are_one_line(kube_cluster, kube_namespace, tmp_path):
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace, token="not-a-known-token")
    with pytest.raises(GraphpackError) as info:
        deployer.plan(make_project(tmp_path))
    assert f"the Kubernetes API at {kube_cluster.url} rejected the credentials (401): Unauthorized" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_untrusted_server_certificate_is_one_line(kube_cluster, kube_namespace, tmp_path):
    kubeconfig = kube_cluster.kubeconfig(tmp_path / "kubeconfig")
    config = json.loads(kubeconfig.read_text())
    del config["clusters"][0]["cluster"]["certificate-authority-data"]  # the system's CAs do not know it
    kubeconfig.write_text(json.dumps(config))
    deployer = KnativeDeployer(tmp_path, namespace=kube_namespace, registry=REGISTRY, builder=FixedBuilder(),
                               kubeconfig=str(kubeconfig))
    with pytest.raises(GraphpackError) as info:
        deployer.plan(make_project(tmp_path))
    assert str(info.value).endswith(f"cannot reach the Kubernetes API at {kube_cluster.url}: its TLS certificate is "
                                    "not trusted (unable to get local issuer certificate): check the kubeconfig's "
                                    "certificate-authority for this cluster"), str(info.value)


def test_rendered_manifests_are_accepted_whole_by_the_crd_schemas(kube_cluster, kube_namespace, tmp_path):
    """render's files, applied with strict field validation (an unknown or pruned field is an error),
    come back from the server exactly as written."""
    project = make_project(tmp_path)
    out = tmp_path / "out"
    render(project, "knative", out, images=Images(registry=REGISTRY, builder=FixedBuilder()),
           namespace=kube_namespace)
    count = 0
    for path in sorted(out.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            stored = kube_cluster.request(
                "PATCH", Cluster.path_of(doc) + "?fieldManager=graphpack&dryRun=All&fieldValidation=Strict", doc,
                content_type="application/apply-patch+yaml")
            assert stored["spec"] == doc["spec"], path.name
            count += 1
    assert count == 4
    bad = yaml.safe_load_all((out / "shop-recommender-scorer.yaml").read_text())
    doc = next(bad)
    container(doc)["imagePullPolice"] = "Always"
    with pytest.raises(ApiError) as info:
        kube_cluster.request("PATCH", Cluster.path_of(doc) + "?fieldManager=graphpack&dryRun=All&fieldValidation=Strict",
                             doc, content_type="application/apply-patch+yaml")
    # the check above could fail: an unknown field fails the apply (the server answers 500 for it)
    assert ".spec.template.spec.containers[0].imagePullPolice: field not declared in schema" in str(info.value)


# -- readiness --------------------------------------------------------------------------------------
def test_readiness_written_by_the_controller_is_reported(kube_cluster, kube_namespace, tmp_path):
    ns = kube_namespace
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, ns, wait=True, ready_timeout=30)
    watchers = [when_applied(kube_cluster, ns, name, kube_cluster.write_ready)
                for name in ("shop-recommender-scorer", "shop-recommender")]
    messages: list[str] = []
    status = deployer.apply(deployer.plan(project), progress=messages.append)
    for watcher in watchers:
        watcher.join()
    assert status["recommender"]["state"] == "ready"
    assert status["recommender"]["url"] == f"http://shop-recommender.{ns}.example.com"
    assert "shop-recommender-scorer is ready" in messages and "shop-recommender is ready" in messages

    # a new revision fails: the controller says so in the Ready condition
    (tmp_path / "child.py").write_text(CHILD_CODE.replace("= 1", "= 3"))
    failure = ('Revision "shop-recommender-scorer-00002" failed with message: Back-off pulling image '
               '"registry.test/shop/scorer@sha256:…".')
    watcher = when_applied(kube_cluster, ns, "shop-recommender-scorer", generation=2, then=lambda obj:
                           kube_cluster.write_ready(obj, "False", "RevisionFailed", failure))
    with pytest.raises(GraphpackError) as info:
        deployer.apply(deployer.plan(project))
    watcher.join()
    assert str(info.value) == f"Knative Service 'shop-recommender-scorer' failed: RevisionFailed: {failure}"
    status = deployer.status()
    assert (status["scorer"]["state"], status["recommender"]["state"]) == ("failed", "ready")
    assert status["scorer"]["message"] == f"RevisionFailed: {failure}"
    assert [(s.action, s.reason) for s in deployer.plan(project).steps][0] == ("update", f"failed: RevisionFailed: "
                                                                                         f"{failure}")


def test_waiting_for_readiness_times_out_naming_what_it_waited_for(kube_cluster, kube_namespace, tmp_path):
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, kube_namespace, wait=True, ready_timeout=1)
    started = time.monotonic()
    with pytest.raises(GraphpackError) as info:
        deployer.apply(deployer.plan(project, ["scorer"]))
    assert time.monotonic() - started < 15
    assert str(info.value) == (f"Knative Service 'shop-recommender-scorer' in namespace '{kube_namespace}' not ready "
                               "after 1s: waited for its Ready condition to be True (last: deploying, no status "
                               "from the Knative Serving controller)")


# -- logs -------------------------------------------------------------------------------------------
def test_logs_come_from_the_pods_through_the_api(kube_cluster, kube_namespace, tmp_path):
    """Pods are found by Knative's service label and their logs read through the API server, which
    asks the node's kubelet (a stand-in: no kubelet runs here)."""
    ns = kube_namespace
    project = make_project(tmp_path)
    deployer = deployer_for(tmp_path, kube_cluster, ns)
    deployer.apply(deployer.plan(project, ["scorer"]))
    with pytest.raises(GraphpackError, match=rf"^no pods of Knative Service 'shop-recommender-scorer' in namespace "
                                             rf"'{ns}' \(scaled to zero, or not started yet\): no logs to show$"):
        list(deployer.logs("scorer"))
    pod = "shop-recommender-scorer-00001-deployment-7d9f-x2k4q"
    with kube_cluster.kubelet_stand_in(f"node-{ns}", {f"{pod}/function": "serving on :8080\nscored e-1\n"}) as seen:
        for name, labels in ((pod, {"serving.knative.dev/service": "shop-recommender-scorer"}),
                             ("unrelated", {"serving.knative.dev/service": "hand-made"})):
            kube_cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": name, "namespace": ns, "labels": labels},
                "spec": {"nodeName": f"node-{ns}", "containers": [{"name": "function", "image": "x"}]}})
        assert list(deployer.logs("scorer")) == [f"[{pod}] serving on :8080", f"[{pod}] scored e-1"]
    assert seen == [f"/containerLogs/{ns}/{pod}/function"]


# -- the command line, pointed at the cluster by a kubeconfig -----------------------------------------
def test_the_cli_deploys_reports_and_removes_through_a_kubeconfig(kube_cluster, kube_namespace, tmp_path):
    from graphpack.packager.images.baseimage import build_base
    from graphpack.packager.images.publish import push
    from graphpack.packager.images.testing import registry_available, run_registry

    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian docker-registry; scripts/test.sh installs it)")
    ns = kube_namespace
    make_project(tmp_path)
    env = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig(tmp_path / "kubeconfig")),
           "GRAPHPACK_NAMESPACE": ns}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graphpack.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    with run_registry() as registry:
        tag = f"{registry.host}/shop/any:v1"
        with registry.client() as client:
            digest = push(build_base(), tag, client)
        images = ["--image", f"recommender={tag}", "--image", f"scorer={tag}"]
        with kube_cluster.controller_stand_in():
            first = run("deploy", "--target", "knative", *images)
        assert first.returncode == 0, first.stderr
        assert f"recommender: http://shop-recommender.{ns}.example.com  (ready)" in first.stdout
        assert "deployed 2 change(s), 2 function(s) on knative" in first.stdout
        before = versions(kube_cluster, ns)
        second = run("deploy", "--target", "knative", *images)
        assert second.returncode == 0, second.stderr
        assert "nothing to change: 2 function(s) already deployed as planned" in second.stderr
        assert versions(kube_cluster, ns) == before
        # another field manager owns the root's containers: one line, exit 1, nothing changed
        kube_cluster.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                            "metadata": {"name": "shop-recommender", "namespace": ns},
                            "spec": {"template": {"spec": {"containers": [{"name": "function", "image": tag}]}}}},
                           manager="kubectl")
        (tmp_path / "serving.py").write_text(ROOT_CODE.replace("True", "'yes'"))
        before = versions(kube_cluster, ns)
        conflict = run("deploy", "--target", "knative", *images)
        assert conflict.returncode == 1
        assert conflict.stderr.strip().splitlines()[-1] == (
            "error: apply Service shop-recommender: field(s) .spec.template.spec.containers are managed by kubectl "
            "(409 conflict): nothing was changed; rerun with --force to take them over")
        assert versions(kube_cluster, ns) == before
        with kube_cluster.controller_stand_in():
            forced = run("deploy", "--target", "knative", "--force", *images)
        assert forced.returncode == 0, forced.stderr
        assert "deployed 1 change(s), 2 function(s) on knative" in forced.stdout
    assert container(objects(kube_cluster, ns)["Service/shop-recommender-scorer"])["image"] == \
        f"{registry.host}/shop/any@{digest}"
    env.pop("GRAPHPACK_NAMESPACE")  # status and down find the namespace in the deploy state
    status = run("status", "--target", "knative", "--json")
    assert status.returncode == 0, status.stderr
    assert {k: v["state"] for k, v in json.loads(status.stdout).items()} == {"scorer": "ready", "recommender": "ready"}
    down = run("down", "--target", "knative")
    assert down.returncode == 0 and "stopped 2 function(s)" in down.stdout, down.stderr
    assert objects(kube_cluster, ns) == {}
    refused = run("deploy", "--target", "docker", "--force")
    assert refused.returncode == 1 and "deploy --force is for the knative target" in refused.stderr
