"""The kafka:// backend beyond the shared contract: URL forms as MLRun writes them, options, errors.

The contract itself (tests/queues/test_contract.py) runs against the session's real broker.
"""
from __future__ import annotations

import json
import time

import pytest

from graphpack.queues import QueueError, open_queue, scheme_of
from graphpack.queues.kafka import KafkaQueue, parse_url
from tests.plugins.kafka_broker import free_port


@pytest.mark.parametrize("url, brokers, expect", [
    ("kafka://b1:9092/orders", None, ("b1:9092", "orders")),
    ("kafka://b1:9092,b2:9093/orders", None, ("b1:9092,b2:9093", "orders")),
    ("kafka:///orders", "b1:9092", ("b1:9092", "orders")),
    ("orders", "b1:9092,b2:9092", ("b1:9092,b2:9092", "orders")),
    ("orders", ["b1:9092", "b2:9092"], ("b1:9092,b2:9092", "orders")),
])
def test_url_forms(url, brokers, expect):
    assert parse_url(url, brokers) == expect


@pytest.mark.parametrize("url, brokers, message", [
    ("kafka:///orders", None, "no Kafka brokers"),
    ("kafka://b1:9092/", None, "needs one topic name"),
    ("kafka://b1:9092/a/b", None, "needs one topic name"),
])
def test_bad_urls_are_one_line_errors(url, brokers, message):
    with pytest.raises(QueueError, match=message):
        parse_url(url, brokers)


def test_a_bare_topic_with_kafka_brokers_is_a_kafka_queue():
    assert scheme_of("orders", kafka_brokers="b1:9092") == "kafka"
    assert scheme_of("orders") == "file"
    queue = open_queue("orders", kafka_brokers="b1:9092", kafka_producer_options={"linger.ms": 5})
    try:
        assert isinstance(queue, KafkaQueue)
        assert (queue.brokers, queue.topic) == ("b1:9092", "orders")
        assert queue.dead_letter_url == "kafka://b1:9092/orders-dead-letter"
    finally:
        queue.close()


def test_unreachable_brokers_fail_check_naming_them():
    port = free_port()  # nobody listens there
    queue = open_queue(f"kafka://127.0.0.1:{port}/orders")
    t0 = time.monotonic()
    try:
        with pytest.raises(QueueError, match=f"Kafka brokers 127.0.0.1:{port} unreachable"):
            queue.check()
    finally:
        queue.close()
    assert time.monotonic() - t0 < 20


def test_existing_topic_with_other_partition_count_is_refused(kafka_broker):
    url = f"kafka://{kafka_broker.bootstrap}/parts-{time.monotonic_ns()}"
    with open_queue(url, shards=2) as first:
        first.check()
    with open_queue(url, shards=3) as second, pytest.raises(QueueError, match="has 2 partition"):
        second.check()


def test_group_offsets_are_kafkas_own(kafka_broker):
    """A Kafka tool sees the group's progress: the committed offset is Kafka's next-to-read."""
    from confluent_kafka import Consumer, TopicPartition

    topic = f"offsets-{time.monotonic_ns()}"
    with open_queue(f"kafka://{kafka_broker.bootstrap}/{topic}") as queue:
        queue.push([{"n": n} for n in range(3)])
        items = []
        while len(items) < 3:
            items += queue.read(0, "child", timeout=1)
        queue.commit(0, "child", items[1].offset)
    plain = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "child"})
    try:
        [part] = plain.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        plain.close()
    assert part.offset == items[1].offset + 1 == 2


def test_a_push_nobody_acknowledged_is_a_storage_error():
    """Nothing is acknowledged that the broker did not acknowledge: with no broker the push fails
    (the event is answered 503), it does not return."""
    from graphpack.queues import StorageError

    queue = open_queue(f"kafka://127.0.0.1:{free_port()}/orders")
    try:
        with pytest.raises(StorageError, match="unreachable"):
            queue.push([{"n": 1}])
    finally:
        queue.close()


def test_a_record_the_broker_refused_is_not_acknowledged_and_the_queue_goes_on(kafka_broker):
    """The producer reports failed records only; a batch the broker refused (larger than the
    topic's max.message.bytes, set by whoever created the topic) fails its push, and the next
    batch is stored and read back."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from graphpack.queues import StorageError

    topic = f"small-{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, config={"max.message.bytes": "2000"})])[topic].result(30)
    with open_queue(f"kafka://{kafka_broker.bootstrap}/{topic}") as queue:
        with pytest.raises(StorageError, match="did not store the records.*(SIZE|LARGE)"):
            queue.push([{"blob": "x" * 5000}])
        queue.push([{"n": 1}, {"n": 2}])
        items = queue.read(0, "g", timeout=10)
    assert [item.record() for item in items] == [{"n": 1}, {"n": 2}]


SASL_OPTIONS = {"kafka_consumer_options": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"}}


def test_sasl_plain_credentials_from_the_environment(kafka_broker, monkeypatch):
    """The broker's SASL/PLAIN listener: the login comes from GRAPHPACK_KAFKA_* variables (a
    Kubernetes secret's keys as the function's variables), only the protocol from the options."""
    monkeypatch.setenv("GRAPHPACK_KAFKA_SASL_USERNAME", kafka_broker.sasl_user)
    monkeypatch.setenv("GRAPHPACK_KAFKA_SASL_PASSWORD", kafka_broker.sasl_password)
    url = f"kafka://{kafka_broker.sasl_bootstrap}/sasl-{time.monotonic_ns()}"
    with open_queue(url, **SASL_OPTIONS) as queue:
        queue.push([{"n": 1}])
        items = queue.read(0, "g", timeout=10)
        queue.commit(0, "g", items[-1].offset)
    assert [item.record() for item in items] == [{"n": 1}]


def test_sasl_plain_credentials_from_a_secret_file(kafka_broker, monkeypatch, tmp_path):
    """``with_secrets("file", dir)`` (a mounted secret, one file per key) gives the login too."""
    secrets = tmp_path / "kafka-secret"
    secrets.mkdir()
    (secrets / "GRAPHPACK_KAFKA_SASL_USERNAME").write_text(kafka_broker.sasl_user)
    (secrets / "GRAPHPACK_KAFKA_SASL_PASSWORD").write_text(kafka_broker.sasl_password + "\n")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"secret_sources": [{"kind": "file", "source": str(secrets)}]}))
    monkeypatch.setenv("GRAPHPACK_SPEC_FILE", str(spec))
    url = f"kafka://{kafka_broker.sasl_bootstrap}/sasl-file-{time.monotonic_ns()}"
    with open_queue(url, **SASL_OPTIONS) as queue:
        queue.push([{"n": 2}])
        assert [item.record() for item in queue.read(0, "g", timeout=10)] == [{"n": 2}]


def test_a_wrong_sasl_password_is_a_one_line_error(kafka_broker, monkeypatch):
    monkeypatch.setenv("GRAPHPACK_KAFKA_SASL_USERNAME", kafka_broker.sasl_user)
    monkeypatch.setenv("GRAPHPACK_KAFKA_SASL_PASSWORD", "wrong")
    with open_queue(f"kafka://{kafka_broker.sasl_bootstrap}/sasl-bad", **SASL_OPTIONS) as queue:
        with pytest.raises(QueueError) as failure:
            queue.check()
    message = str(failure.value)
    assert "\n" not in message and "uthentication" in message and "wrong" not in message, message


TLS_OPTIONS = {"kafka_consumer_options": {"security.protocol": "SSL"}}


def _secret_dir(tmp_path, monkeypatch, values: dict) -> None:
    """The function's secret as a mounted directory (one file per key), declared in its spec."""
    secrets = tmp_path / "kafka-secret"
    secrets.mkdir()
    for key, value in values.items():
        (secrets / key).write_text(value)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"secret_sources": [{"kind": "file", "source": str(secrets)}]}))
    monkeypatch.setenv("GRAPHPACK_SPEC_FILE", str(spec))


@pytest.mark.parametrize("source", ["env", "file"])
def test_tls_with_the_ca_from_a_secret(kafka_broker, monkeypatch, tmp_path, source):
    """The broker's TLS listener (a certificate for 127.0.0.1 of a CA made at test time): the CA
    comes from the function's secret, as a variable or a mounted file; records go both ways."""
    ca = kafka_broker.pki.ca.read_text()
    if source == "env":
        monkeypatch.setenv("GRAPHPACK_KAFKA_SSL_CA_PEM", ca)
    else:
        _secret_dir(tmp_path, monkeypatch, {"GRAPHPACK_KAFKA_SSL_CA_PEM": ca})
    url = f"kafka://{kafka_broker.tls_bootstrap}/tls-{source}-{time.monotonic_ns()}"
    with open_queue(url, **TLS_OPTIONS) as queue:
        queue.push([{"n": 1}, {"n": 2}])
        items = queue.read(0, "g", timeout=10)
        queue.commit(0, "g", items[-1].offset)
    assert [item.record() for item in items] == [{"n": 1}, {"n": 2}]


def test_mutual_tls_with_the_client_certificate_from_a_secret(kafka_broker, monkeypatch, tmp_path):
    """The listener that requires a client certificate: CA from a variable, the client's
    certificate and key from a mounted secret."""
    pki = kafka_broker.pki
    monkeypatch.setenv("GRAPHPACK_KAFKA_SSL_CA_PEM", pki.ca.read_text())
    _secret_dir(tmp_path, monkeypatch, {"GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM": pki.client_cert.read_text(),
                                        "GRAPHPACK_KAFKA_SSL_KEY_PEM": pki.client_key.read_text()})
    url = f"kafka://{kafka_broker.mtls_bootstrap}/mtls-{time.monotonic_ns()}"
    with open_queue(url, **TLS_OPTIONS) as queue:
        queue.push([{"n": 3}])
        assert [item.record() for item in queue.read(0, "g", timeout=10)] == [{"n": 3}]


@pytest.mark.parametrize("case", ["other CA", "no client certificate"])
def test_a_refused_certificate_is_a_one_line_error_naming_the_brokers(kafka_broker, monkeypatch, case):
    """A CA that did not sign the broker's certificate, or no client certificate where the broker
    requires one: check() fails within seconds, one line naming the brokers and the certificate."""
    pki = kafka_broker.pki
    ca, bootstrap = (pki.other_ca, kafka_broker.tls_bootstrap) if case == "other CA" else \
        (pki.ca, kafka_broker.mtls_bootstrap)
    monkeypatch.setenv("GRAPHPACK_KAFKA_SSL_CA_PEM", ca.read_text())
    t0 = time.monotonic()
    with open_queue(f"kafka://{bootstrap}/tls-bad", **TLS_OPTIONS) as queue:
        with pytest.raises(QueueError) as failure:
            queue.check()
    message = str(failure.value)
    assert "\n" not in message and f"TLS with Kafka brokers {bootstrap} failed" in message, message
    assert "certificate" in message, message
    assert time.monotonic() - t0 < 10


def test_a_ca_secret_that_is_no_pem_is_a_one_line_error(kafka_broker, monkeypatch):
    monkeypatch.setenv("GRAPHPACK_KAFKA_SSL_CA_PEM", "not a certificate")
    with open_queue(f"kafka://{kafka_broker.tls_bootstrap}/tls-garbage", **TLS_OPTIONS) as queue:
        with pytest.raises(QueueError, match="bad Kafka client settings: .*ssl.ca.pem") as failure:
            queue.check()
    assert "\n" not in str(failure.value)
