"""The local target with a Kafka queue between root and child: the child's kafka-cluster trigger is
consumed by ``graphpack serve`` itself (real processes, the session's real broker)."""
import json
import time

import pytest

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
