"""Kafka credentials never reach an image: a root -> Kafka queue -> child project using SASL and
TLS, its credentials declared as env secrets and set in the environment while it is built, built
by the daemonless OCI builder; no layer, no image config and no written file holds a value."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import graphpack
from graphpack.packager import build_project
from graphpack.packager.images.builder import layer_files
from graphpack.packager.images.daemonless import OCIBuilder
from graphpack.packager.images.wheels import download_wheels
from graphpack.packager.requirements import pin, processor_requirements

CODE = "class Echo:\n    def do(self, body):\n        return body\n"
SASL_SSL = {"kafka_consumer_options": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}}


def pem(kind: str) -> str:
    body = "\n".join(uuid.uuid4().hex * 2 for _ in range(3))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"


@pytest.fixture(scope="module")
def kafka_wheels() -> Path:
    return download_wheels([*processor_requirements(), pin("confluent-kafka")])


def test_no_kafka_credential_reaches_an_image_layer(tmp_path, monkeypatch, base_image, kafka_wheels):
    values = {"GRAPHPACK_KAFKA_SASL_USERNAME": "user-" + uuid.uuid4().hex,
              "GRAPHPACK_KAFKA_SASL_PASSWORD": "pw-" + uuid.uuid4().hex,
              "GRAPHPACK_KAFKA_SSL_CA_PEM": pem("CERTIFICATE"),
              "GRAPHPACK_KAFKA_SSL_CERTIFICATE_PEM": pem("CERTIFICATE"),
              "GRAPHPACK_KAFKA_SSL_KEY_PEM": pem("PRIVATE KEY")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # each value whole, and each base64 line of a PEM (a PEM re-indented or re-joined keeps those)
    needles = {line.encode() for value in values.values() for line in [value, *value.splitlines()]
               if not line.startswith("-----")}
    (tmp_path / "serving.py").write_text(CODE)
    project = graphpack.get_or_create_project("ksec", str(tmp_path))
    fn = project.set_function(str(tmp_path / "serving.py"), name="root")
    fn.with_secrets("env", list(values))
    fn.set_topology("flow", engine="sync").to(class_name="Echo", name="e").respond() \
        .to(">>", "q", path="kafka://b1:9093/orders", **SASL_SSL) \
        .to(class_name="Echo", name="kid-echo", function="kid")
    fn.add_child_function("kid", str(tmp_path / "serving.py"))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        build_project(project, tmp_path / "build", target="docker", wheels=str(kafka_wheels))
    finally:
        os.chdir(cwd)

    contexts = sorted(p.parent for p in (tmp_path / "build").rglob("Dockerfile"))
    assert [c.name for c in contexts] == ["kid", "root"], contexts
    leaks: list[str] = []
    for path in (tmp_path / "build").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path}: {n[:8]!r}" for n in needles if n in data]
    builder = OCIBuilder(base=base_image, push=False)
    for context in contexts:
        image = builder.assemble(context)
        function_layers = image.layers[len(base_image.layers):]
        assert len(function_layers) == 2, "expected the requirements and the code layers"
        names: set[str] = set()
        for layer in image.layers:
            _, members, raw = layer_files(layer.read())
            names.update(members)
            leaks += [f"{context.name} layer {layer.diff_id[:19]}: {n[:8]!r}" for n in needles if n in raw]
        config = image.config_blob()
        leaks += [f"{context.name} config: {n[:8]!r}" for n in needles if n in config]
        # the layers this test searched are the function's: its spec and the Kafka client are there
        assert any(name.endswith("function/spec.json") for name in names), context
        assert any("confluent_kafka/" in name for name in names), context
        assert b"GRAPHPACK_KAFKA_SASL_PASSWORD" in config or b"GRAPHPACK_KAFKA_SASL_PASSWORD" in \
            layer_files(function_layers[-1].read())[2], "the secret's name (a reference) is nowhere"
    assert not leaks, leaks
