"""A child reading a Kafka queue: Nuclio's kafka-cluster trigger, requirements, no inline secrets."""
from __future__ import annotations

import pytest
import yaml

from graphpack import GraphpackError, new_function
from graphpack.packager import plan_and_render
from graphpack.packager.schema import validate

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
