"""A child reading a Kafka queue: Nuclio's kafka-cluster trigger, requirements, no inline secrets."""
from __future__ import annotations

import re
import uuid

import pytest
import yaml

from graphpack import GraphpackError, new_function
from graphpack.packager import plan_and_render
from graphpack.packager.schema import validate

from .conftest import DESIGN, read_tree, run_build, write_project

CODE = "class Echo:\n    def do(self, body):\n        return body\n"


@pytest.fixture
def code(tmp_path):
    path = tmp_path / "code.py"
    path.write_text(CODE)
    return str(path)


def rendered(fn, target="nuclio") -> dict:
    """function -> (function.yaml dict, requirements names)."""
    out = {}
    for context in plan_and_render(fn, "p", target):
        config = yaml.safe_load(context.files["function.yaml"][0])
        reqs = [r.split("==")[0].split(">=")[0] for r in context.files["requirements.txt"][0].decode().split()]
        out[context.plan.function] = (config, reqs)
    return out


def shop(code, **queue):
    fn = new_function("shop", "p", filename=code)
    fn.set_topology("flow").to("Echo", name="e").respond().to(">>", "q", **queue) \
        .to("Echo", name="kid-echo", function="kid")
    fn.add_child_function("kid", code)
    return fn


@pytest.mark.parametrize("queue", [
    {"path": "kafka://b1:9092,b2:9092/orders"},
    {"path": "orders", "kafka_brokers": "b1:9092,b2:9092"},  # MLRun's other form
])
def test_the_child_gets_a_kafka_cluster_trigger(code, queue):
    out = rendered(shop(code, **queue))
    root, root_reqs = out["shop"]
    kid, kid_reqs = out["kid"]
    validate(kid)
    trigger = kid["spec"]["triggers"]["kafka"]
    assert trigger["kind"] == "kafka-cluster"
    assert trigger["attributes"] == {"brokers": ["b1:9092", "b2:9092"], "topics": ["orders"],
                                     "consumerGroup": "p-shop-kid", "initialOffset": "earliest"}
    env = {e["name"] for e in kid["spec"]["env"]}
    assert "GRAPHPACK_QUEUE_CONSUMER" not in env  # Nuclio consumes it; a second consumer would double-read
    assert "kafka" not in root["spec"]["triggers"]
    assert "confluent-kafka" in root_reqs and "confluent-kafka" in kid_reqs


def test_trigger_args_and_group_reach_the_trigger(code):
    fn = shop(code, path="kafka://b1:9092/orders", group="billing",
              trigger_args={"max_workers": 4, "session_timeout": "20s", "initial_offset": "latest"})
    kid, _ = rendered(fn)["kid"]
    trigger = kid["spec"]["triggers"]["kafka"]
    assert trigger["numWorkers"] == 4  # maxWorkers is deprecated in Nuclio 1.14
    assert trigger["attributes"]["sessionTimeout"] == "20s"
    assert trigger["attributes"]["initialOffset"] == "latest"
    assert trigger["attributes"]["consumerGroup"] == "billing"


def test_inline_credentials_are_refused(code):
    fn = shop(code, path="kafka://b1:9092/orders",
              kafka_producer_options={"sasl.mechanism": "PLAIN", "sasl.password": "hunter2"})
    with pytest.raises(GraphpackError, match=r"child 'kid': queue 'q': option kafka_producer_options\['sasl.password'\] "
                                             r"holds a credential inline.*GRAPHPACK_KAFKA_SASL_PASSWORD"):
        plan_and_render(fn, "p", "nuclio")
    fn = shop(code, path="kafka://b1:9092/orders", trigger_args={"sasl": {"enable": True, "password": "hunter2"}})
    with pytest.raises(GraphpackError, match=r"'sasl.password' holds a credential inline"):
        plan_and_render(fn, "p", "nuclio")


def test_a_kafka_queue_without_brokers_is_one_line(code):
    with pytest.raises(GraphpackError, match=r"child 'kid': queue 'q': .*no Kafka brokers"):
        plan_and_render(shop(code, path="kafka:///orders"), "p", "nuclio")


def test_credentials_reach_the_client_from_the_environment(monkeypatch):
    from graphpack.queues.kafka import KafkaQueue

    monkeypatch.setenv("GRAPHPACK_KAFKA_SASL_PASSWORD", "from-a-secret")
    queue = KafkaQueue("kafka://b1:9092/orders")
    try:
        assert queue._common()["sasl.password"] == "from-a-secret"
    finally:
        queue.close()


SECRET_NAMES = ["GRAPHPACK_KAFKA_SASL_USERNAME", "GRAPHPACK_KAFKA_SASL_PASSWORD", "GRAPHPACK_KAFKA_SSL_CA_PEM",
                "GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM", "GRAPHPACK_KAFKA_SSL_KEY_PEM"]
SASL_SSL = {"kafka_consumer_options": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}}


def test_sasl_and_tls_reach_the_trigger_as_references(code):
    fn = shop(code, path="kafka://b1:9093/orders", **SASL_SSL)
    fn.with_secrets("env", SECRET_NAMES)
    kid, _ = rendered(fn)["kid"]
    validate(kid)
    attributes = kid["spec"]["triggers"]["kafka"]["attributes"]
    assert attributes["sasl"] == {"enable": True, "handshake": True, "mechanism": "SCRAM-SHA-512",
                                  "user": "$ref:/spec/triggers/kafka/attributes/sasl/user",
                                  "password": "$ref:/spec/triggers/kafka/attributes/sasl/password"}
    assert attributes["tls"] == {"enable": True}
    assert attributes["caCert"] == "$ref:/spec/triggers/kafka/attributes/cacert"
    assert attributes["accessCertificate"] == "$ref:/spec/triggers/kafka/attributes/accesscertificate"
    assert attributes["accessKey"] == "$ref:/spec/triggers/kafka/attributes/accesskey"
    env = {e["name"]: e for e in kid["spec"]["env"]}  # the child's own consumer reads them from its secret
    assert env["GRAPHPACK_KAFKA_SASL_PASSWORD"] == {
        "name": "GRAPHPACK_KAFKA_SASL_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "p-secrets", "key": "GRAPHPACK_KAFKA_SASL_PASSWORD"}}}


@pytest.mark.parametrize("options, secrets, message", [
    (SASL_SSL, ["GRAPHPACK_KAFKA_SASL_USERNAME"], r"uses SASL_SSL: declare its credentials as secrets, "
                                                   r"fn.with_secrets\('env', \['GRAPHPACK_KAFKA_SASL_PASSWORD'\]\)"),
    ({"kafka_producer_options": {"security.protocol": "SSL"}}, ["GRAPHPACK_KAFKA_SSL_KEY_PEM"],
     "a client certificate needs both GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM and GRAPHPACK_KAFKA_SSL_KEY_PEM"),
    ({"kafka_consumer_options": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "GSSAPI"}},
     SECRET_NAMES, "sasl.mechanism 'GSSAPI' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"kafka_consumer_options": {"security.protocol": "TLS"}}, [], "security.protocol 'TLS' is not one of"),
])
def test_kafka_security_mistakes_are_one_line_errors(code, options, secrets, message):
    fn = shop(code, path="kafka://b1:9093/orders", **options)
    if secrets:
        fn.with_secrets("env", secrets)
    with pytest.raises(GraphpackError, match=r"child 'kid': queue 'q' .*" if "declare" in message else message) \
            as failure:
        plan_and_render(fn, "p", "nuclio")
    assert "\n" not in str(failure.value)
    assert re.search(message, str(failure.value)), failure.value


def test_no_kafka_credential_lands_in_a_written_file(tmp_path, monkeypatch):
    """graphpack build -o with SASL/TLS credentials in the environment: every file it writes
    (function.yaml, spec.json, the build context the image is made of) holds references only."""
    values = {name: f"v-{name.lower()}-{uuid.uuid4().hex}" for name in SECRET_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    source = write_project(tmp_path / "src", DESIGN + f'''
fn.with_secrets("env", {SECRET_NAMES!r})
''', QUEUE="kafka://b1:9093/orders", SHARDS=None)
    text = source.read_text().replace("shards=SHARDS)", f"shards=SHARDS, **{SASL_SSL!r})")
    assert text != source.read_text()
    source.write_text(text)
    out = tmp_path / "out"
    result = run_build("-f", str(source), "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    files = read_tree(out)
    assert any(b"$ref:/spec/triggers/kafka/attributes/sasl/password" in data for data, _ in files.values())
    for path, (data, _) in files.items():
        for value in values.values():
            assert value.encode() not in data, f"{value} leaked into {path}"


def test_the_nuclio_deploy_request_alone_carries_the_values(code, monkeypatch):
    """The dashboard gets the values (Nuclio keeps them in the function's secret); a missing one
    is a one-line error naming the variable."""
    from graphpack.packager.kafka_auth import resolve_refs

    fn = shop(code, path="kafka://b1:9093/orders", **SASL_SSL)
    fn.with_secrets("env", SECRET_NAMES[:2])
    kid, _ = rendered(fn)["kid"]
    environ = {"GRAPHPACK_KAFKA_SASL_USERNAME": "alice", "GRAPHPACK_KAFKA_SASL_PASSWORD": "hunter22"}
    sent = resolve_refs("function 'kid'", kid, environ)
    assert sent["spec"]["triggers"]["kafka"]["attributes"]["sasl"]["password"] == "hunter22"
    assert kid["spec"]["triggers"]["kafka"]["attributes"]["sasl"]["password"].startswith("$ref:")  # not changed
    with pytest.raises(GraphpackError, match="trigger 'kafka' needs GRAPHPACK_KAFKA_SASL_PASSWORD in the environment"):
        resolve_refs("function 'kid'", kid, {"GRAPHPACK_KAFKA_SASL_USERNAME": "alice"})
