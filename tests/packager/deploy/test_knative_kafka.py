"""The Knative target with a Kafka queue: a KafkaSource per child, its lifecycle, and the child's
handling of the CloudEvents it delivers.

Knative's own validation of KafkaSource (tests/knative) is not available here: its Go types live in
knative.dev/eventing-kafka-broker, which the Go module proxy refuses on this machine (403), so the
checker cannot import them; the Service manifests beside it still go through the checker.
The KafkaSource lifecycle runs against MemoryKube, not the real API server: its CRD is in that same
module, and no served registry ships it (npm @kubernetes-models/knative 4.0.0, Maven io.fabric8:knative-model
7.4.0: neither has it); test_knative_apiserver.py checks that a cluster without it is a clear error.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import graphpack
from graphpack.handlers.events import from_nuclio
from graphpack.packager.deploy.knative import KnativeDeployer, MemoryKube
from graphpack.packager.images import FixedBuilder
from graphpack.packager.render import Images, render
from graphpack.queues import record as wire
from graphpack.runtime.event import Event
from tests.knative import checker

from .test_knative import CHILD_CODE, REGISTRY, ROOT_CODE


def kafka_project(directory: Path, path="kafka://k1:9092,k2:9092/orders", secrets=None, **options):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(ROOT_CODE)
    (directory / "child.py").write_text(CHILD_CODE)
    project = graphpack.get_or_create_project("shop", str(directory))
    fn = project.set_function("serving.py", name="recommender")
    fn.set_topology("flow", engine="async").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path=path, **options).to(class_name="Score", name="score", function="scorer")
    fn.add_child_function("scorer", "child.py")
    if secrets:
        fn.with_secrets("env", secrets)
    project.save()
    return project


def test_sasl_and_tls_of_the_kafka_source_are_secret_references(tmp_path, monkeypatch):
    """spec.net takes the login, the SASL type and the certificates from the project's secret,
    keyed by the variables the child's own clients read; no value is written."""
    names = ["GRAPHPACK_KAFKA_SASL_USERNAME", "GRAPHPACK_KAFKA_SASL_PASSWORD", "GRAPHPACK_KAFKA_SSL_CA_PEM",
             "GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM", "GRAPHPACK_KAFKA_SSL_KEY_PEM"]
    for name in names:
        monkeypatch.setenv(name, "value-of-" + name.lower())
    project = kafka_project(tmp_path, secrets=names, kafka_consumer_options={
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256"})
    out = tmp_path / "out"
    render(project, "knative", out, images=Images(registry=REGISTRY, builder=FixedBuilder()), namespace="ml")
    text = (out / "shop-recommender-scorer.yaml").read_text()
    assert "value-of-" not in text
    source = [d for d in yaml.safe_load_all(text) if d][1]

    def ref(key):
        return {"secretKeyRef": {"name": "shop-secrets", "key": key}}

    assert source["spec"]["net"] == {
        "sasl": {"enable": True, "type": ref("GRAPHPACK_KAFKA_SASL_MECHANISM"),
                 "user": ref("GRAPHPACK_KAFKA_SASL_USERNAME"), "password": ref("GRAPHPACK_KAFKA_SASL_PASSWORD")},
        "tls": {"enable": True, "caCert": ref("GRAPHPACK_KAFKA_SSL_CA_PEM"),
                "cert": ref("GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM"), "key": ref("GRAPHPACK_KAFKA_SSL_KEY_PEM")}}


def test_the_child_gets_a_kafka_source_sinking_into_its_service(tmp_path):
    project = kafka_project(tmp_path, trigger_args={"max_workers": 3})
    out = tmp_path / "out"
    render(project, "knative", out, images=Images(registry=REGISTRY, builder=FixedBuilder()), namespace="ml")
    child = [d for d in yaml.safe_load_all((out / "shop-recommender-scorer.yaml").read_text()) if d]
    assert [d["kind"] for d in child] == ["Service", "KafkaSource"]
    source = child[1]
    assert source["apiVersion"] == "sources.knative.dev/v1"
    assert source["metadata"]["name"] == "shop-recommender-scorer-kafka"
    assert source["spec"] == {
        "bootstrapServers": ["k1:9092", "k2:9092"], "topics": ["orders"],
        "consumerGroup": "shop-recommender-scorer", "initialOffset": "earliest", "consumers": 3,
        "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                         "name": "shop-recommender-scorer", "namespace": "ml"}}}
    env = {e["name"] for e in child[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "GRAPHPACK_QUEUE_CONSUMER" not in env  # the KafkaSource is the only consumer
    root = [d for d in yaml.safe_load_all((out / "shop-recommender.yaml").read_text()) if d]
    assert [d["kind"] for d in root] == ["Service"]
    if shutil.which("go") is not None:  # the Services still pass Knative's own validation
        (out / "shop-recommender-scorer.yaml").write_text(yaml.safe_dump(child[0]))
        check = checker.check(out)
        assert check.returncode == 0, check.stdout + check.stderr


def test_kafka_sources_are_applied_kept_and_deleted(tmp_path):
    project = kafka_project(tmp_path)
    kube = MemoryKube()
    deployer = KnativeDeployer(tmp_path, api=kube, registry=REGISTRY, builder=FixedBuilder())
    deployer.apply(deployer.plan(project))
    assert ("apply", "KafkaSource", "shop-recommender-scorer-kafka") in kube.calls
    assert not deployer.plan(project).changes
    kube.delete("KafkaSource", "shop-recommender-scorer-kafka")  # removed behind our back: put back
    plan = deployer.plan(project)
    assert [(s.action, s.reason) for s in plan.steps if s.function == "scorer"] == [("update", "Kafka sources changed")]
    deployer.apply(plan)
    # the child moves to an S3 queue: its KafkaSource goes on the next apply
    project = kafka_project(tmp_path, path="s3://bucket/queues/q1")
    plan = deployer.plan(project)
    assert next(s for s in plan.steps if s.function == "scorer").details["stale_kafka_sources"] == \
        ["shop-recommender-scorer-kafka"]
    kube.calls.clear()
    deployer.apply(plan)
    assert ("delete", "KafkaSource", "shop-recommender-scorer-kafka") in kube.calls
    project = kafka_project(tmp_path)
    deployer.apply(deployer.plan(project))
    deployer.delete()
    assert kube.objects == {}


def test_a_kafka_cloudevent_is_a_queue_record():
    """KafkaSource POSTs the record value with ``ce-type: dev.knative.kafka.event``: the child reads
    it as the wire record the root pushed (its id and body), not as an HTTP body."""
    pushed = Event(body={"x": 1}, id="e-7")
    data = wire.encode(wire.wrap(pushed))
    http = SimpleNamespace(body=data, headers={"Ce-Type": "dev.knative.kafka.event", "Ce-Id": "p0-o5",
                                               "Content-Type": "application/json"},
                           trigger=SimpleNamespace(kind="http"), method="POST", path="/", id="x")
    event = from_nuclio(http)
    assert (event.body, event.id) == ({"x": 1}, "e-7")
    plain = SimpleNamespace(**{**vars(http), "headers": {"Content-Type": "application/json"}})
    assert from_nuclio(plain).body == data  # any other POST stays an HTTP body
    assert json.loads(data)["full_event_wrapper"] is True


@pytest.mark.parametrize("k_service, expect", [(None, True), ("shop-recommender-scorer", False)])
def test_serve_consumes_the_trigger_itself_except_under_knative(monkeypatch, k_service, expect):
    from graphpack.runtime.processor import _consume_kafka_trigger

    for name in ("GRAPHPACK_QUEUE_CONSUMER", "GRAPHPACK_CONSUMER_GROUP"):  # restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    if k_service:
        monkeypatch.setenv("K_SERVICE", k_service)
    else:
        monkeypatch.delenv("K_SERVICE", raising=False)
    config = {"spec": {"triggers": {"kafka": {"kind": "kafka-cluster", "attributes": {
        "brokers": ["k1:9092", "k2:9092"], "topics": ["orders"], "consumerGroup": "g1"}}}}}
    _consume_kafka_trigger(config)
    assert (os.environ.get("GRAPHPACK_QUEUE_CONSUMER") == "kafka://k1:9092,k2:9092/orders") is expect
    assert (os.environ.get("GRAPHPACK_CONSUMER_GROUP") == "g1") is expect
