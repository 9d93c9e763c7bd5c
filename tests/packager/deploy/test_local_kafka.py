"""The local target with a Kafka queue between root and child: the child's kafka-cluster trigger is
consumed by ``graphpack serve`` itself (real processes, the session's real broker), also while the
child and the broker are SIGKILLed (issue 19 point 4)."""
import json
import os
import signal
import threading
import time

import pytest
import yaml

import graphpack
from graphpack import GraphpackError
from tests.packager.deploy.test_local import CHILD, CODE, free_port, lines


@pytest.fixture
def kafka_project(tmp_path, monkeypatch, kafka_broker):
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    project = graphpack.get_or_create_project("kdemo", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    topic = f"orders-{time.monotonic_ns()}"
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path=topic, kafka_brokers=kafka_broker.bootstrap, shards=2) \
        .to(class_name="Writer", name="write", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_http(workers=1, port=free_port())
    yield project
    try:
        project.down(purge=True)
    except GraphpackError:
        pass


def test_root_to_child_over_kafka(kafka_project, tmp_path):
    kafka_project.deploy_function("root")
    child_yaml = next(tmp_path.rglob("child/function.yaml")).read_text()
    assert "kafka-cluster" in child_yaml and "GRAPHPACK_QUEUE_CONSUMER" not in child_yaml
    for i in range(20):
        assert kafka_project.invoke("root", "/", {"i": i}) == {"i": i, "tag": "v1"}
    seen = lines(tmp_path / "child.jsonl", 20, timeout=60)
    assert sorted(r["i"] for r in seen) == list(range(20))
    assert all(r["tag"] == "v1" for r in seen)
    requirements = next(tmp_path.rglob("child/requirements.txt")).read_text()
    assert "confluent-kafka==" in requirements, requirements
    assert json.loads(json.dumps(seen))  # plain JSON all the way


@pytest.mark.slow
def test_sigkill_of_child_and_broker_loses_nothing_acknowledged(tmp_path, monkeypatch, kafka_broker):
    """Root -> Kafka queue -> child deployed on the local target, 10,000 events over HTTP from 8
    connections (a client sending again what was not acknowledged): the child is SIGKILLed twice
    mid-batch (its keeper restarts it) and the broker once (restarted in place). Every acknowledged
    event reaches the child; duplicates stay within one consumer batch per kill plus the events
    that were sent again."""
    from tests.packager.deploy.test_faults import (CONSUMER_BATCH, check, children, deployed, received, send,
                                                 url_of)

    events, threads = 10_000, 8
    topic = f"faults-{time.monotonic_ns()}"
    with deployed(tmp_path, monkeypatch, topic, kafka_brokers=kafka_broker.bootstrap, shards=2) as project:
        url, out, statuses = url_of(project), tmp_path / "child.txt", {}
        sent: list[int] = []
        counting = dict.__setitem__

        class Counted(dict):  # counts every answer, to bound the duplicates of events sent again
            def __setitem__(self, n: int, value: object) -> None:
                sent.append(n)
                counting(self, n, value)

        statuses = Counted()
        t0 = time.monotonic()
        sender = threading.Thread(target=send, args=(url, range(events), statuses),
                                  kwargs={"threads": threads, "retry": True, "stop_after": 120})
        sender.start()
        kills, restarts = [], []
        # the broker while the root is sending, then the child twice while it is consuming
        for target in ("broker", "child", "child"):
            deadline = time.monotonic() + 60
            child_had = sum(received(out).values())
            while time.monotonic() < deadline and (
                    len(statuses) < 3000 if target == "broker" else sum(received(out).values()) < child_had + 1000):
                time.sleep(0.02)
            if target == "child":  # its supervisor and the workers consuming, at once
                supervisor = project.deployer().status()["child"]["pid"]
                for pid in [*children(supervisor), supervisor]:
                    os.kill(pid, signal.SIGKILL)
            else:
                kafka_broker.kill()
                restarts.append(kafka_broker.start())
            kills.append((target, len(statuses), sum(received(out).values())))
        sender.join(150)
        assert not sender.is_alive()
        acked, seen = check(statuses, out, settle=60)
        assert len(acked) == events, f"{events - len(acked)} events never acknowledged"
        duplicates = sum(seen.values()) - len(seen)
        resent = len(sent) - events
        bound = len(kills) * CONSUMER_BATCH + resent
        status = project.deployer().status()["child"]
        print(f"kafka SIGKILL: {events} events in {time.monotonic() - t0:.1f} s, kills (target, answered, child had) "
              f"{kills}, broker restart {restarts[0]:.1f} s, child restarts {status.get('restarts')}, "
              f"{resent} answers not 200 sent again, 0 lost, {duplicates} duplicates (bound {bound})")
        assert status.get("restarts", 0) >= 2, status
        assert duplicates <= bound, f"{duplicates} duplicates for kills {kills}"


def authenticated_project(tmp_path, monkeypatch, kafka_broker, auth: str, ca=None):
    """Root -> Kafka queue -> child over the broker's SASL/PLAIN (``sasl``) or mutual-TLS
    (``mtls``) listener, credentials declared as env secrets and set in the environment (``ca``:
    another CA file); returns the project and a secret text no written file may hold."""
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    pki = kafka_broker.pki
    if auth == "sasl":
        bootstrap, options = kafka_broker.sasl_bootstrap, {"security.protocol": "SASL_PLAINTEXT",
                                                           "sasl.mechanism": "PLAIN"}
        secrets = {"GRAPHPACK_KAFKA_SASL_USERNAME": kafka_broker.sasl_user,
                   "GRAPHPACK_KAFKA_SASL_PASSWORD": kafka_broker.sasl_password}
        secret = kafka_broker.sasl_password
    else:
        bootstrap, options = kafka_broker.mtls_bootstrap, {"security.protocol": "SSL"}
        secrets = {"GRAPHPACK_KAFKA_SSL_CA_PEM": (ca or pki.ca).read_text(),
                   "GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM": pki.client_cert.read_text(),
                   "GRAPHPACK_KAFKA_SSL_KEY_PEM": pki.client_key.read_text()}
        secret = pki.client_key.read_text().splitlines()[1]  # a base64 line of the client's key
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    project = graphpack.get_or_create_project(f"k{auth}", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path=f"kafka://{bootstrap}/{auth}-{time.monotonic_ns()}", kafka_consumer_options=options) \
        .to(class_name="Writer", name="write", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_secrets("env", list(secrets))
    fn.with_http(workers=1, port=free_port())
    return project, secret


@pytest.mark.parametrize("auth", ["sasl", "mtls"])
def test_root_to_child_over_an_authenticated_listener_with_credentials_from_the_secret(
        tmp_path, monkeypatch, kafka_broker, auth):
    """Between deployed functions, the broker's SASL/PLAIN listener (a login) or its mutual-TLS one
    (the CA, a client certificate and key): the credentials reach graphpack serve's producer and
    consumer from the secret (the environment here, as the local target runs), the files
    graphpack wrote hold references only."""
    project, secret = authenticated_project(tmp_path, monkeypatch, kafka_broker, auth)
    try:
        project.deploy_function("root")
        for i in range(5):
            assert project.invoke("root", "/", {"i": i}) == {"i": i, "tag": "v1"}
        assert sorted(r["i"] for r in lines(tmp_path / "child.jsonl", 5, timeout=60)) == list(range(5))
        attributes = yaml.safe_load(next(tmp_path.rglob("child/function.yaml")).read_text())["spec"]["triggers"][
            "kafka"]["attributes"]
        if auth == "sasl":
            assert attributes["sasl"]["password"] == "$ref:/spec/triggers/kafka/attributes/sasl/password"
        else:
            assert attributes["tls"] == {"enable": True}
            assert attributes["accessKey"] == "$ref:/spec/triggers/kafka/attributes/accesskey"
        written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("child.jsonl",)]
        assert written and not [p for p in written if secret.encode() in p.read_bytes()]
    finally:
        try:
            project.down(purge=True)
        except GraphpackError:
            pass


def test_a_ca_that_does_not_trust_the_broker_fails_the_deploy_in_one_line(tmp_path, monkeypatch, kafka_broker):
    project, _ = authenticated_project(tmp_path, monkeypatch, kafka_broker, "mtls", ca=kafka_broker.pki.other_ca)
    t0 = time.monotonic()
    try:
        with pytest.raises(GraphpackError) as failure:
            project.deploy_function("root")
    finally:
        try:
            project.down(purge=True)
        except GraphpackError:
            pass
    message = str(failure.value)
    assert "\n" not in message and f"TLS with Kafka brokers {kafka_broker.mtls_bootstrap} failed" in message, message
    assert "certificate verify failed" in message, message
    assert time.monotonic() - t0 < 30
