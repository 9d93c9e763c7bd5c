"""``graphpack build``: the build contexts of a project (root + children), end to end."""
from __future__ import annotations

import hashlib
import json
import stat
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import yaml

import graphpack
from graphpack.packager.schema import errors as schema_errors
from graphpack.packager.schema import function_schema

from .conftest import load_json, read_tree, run_build, write_project

BUILD_FILES = {"function.yaml", "graphpack_entry.py", "requirements.txt", "spec.json", "Dockerfile"}


def built(design_project, tmp_path: Path, *args: str, **kw) -> Path:
    out = tmp_path / "out"
    result = run_build("-f", str(design_project(**kw)), "-o", str(out), *args)
    assert result.exit_code == 0, result.stderr
    return out


def test_one_directory_per_function_with_every_file(design_project, tmp_path):
    out = built(design_project, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["enricher", "recommender"]
    for name, code in (("recommender", "serving.py"), ("enricher", "enrich.py")):
        files = set(read_tree(out / name))
        assert BUILD_FILES | {code} <= files
        assert (out / name / "wheels").is_dir()
        assert "graphpack/handlers/entry.py" in files and "graphpack/runtime/server.py" in files
        assert not any(f.startswith(("graphpack/packager/", "graphpack/templates/")) for f in files)
    assert "class Echo" in (out / "recommender" / "serving.py").read_text()
    assert "class Score" in (out / "enricher" / "enrich.py").read_text()
    pins = {name: f"{name}=={version(name)}" for name in ("PyYAML", "uvloop", "httptools", "boto3", "croniter",
                                                               "scikit-learn", "pandas")}
    # the root pushes to an s3:// queue and error stream and has a cron schedule; the child reads the queue
    assert (out / "recommender" / "requirements.txt").read_text().splitlines() == [
        pins[n] for n in ("PyYAML", "uvloop", "httptools", "boto3", "croniter", "scikit-learn")]
    assert (out / "enricher" / "requirements.txt").read_text().splitlines() == [
        pins[n] for n in ("PyYAML", "uvloop", "httptools", "boto3", "pandas")]
    assert not list(out.glob(".graphpack-build-*"))


def test_function_yaml_root(design_project, tmp_path):
    config = yaml.safe_load((built(design_project, tmp_path) / "recommender" / "function.yaml").read_text())
    assert config["apiVersion"] == "nuclio.io/v1" and config["kind"] == "NuclioFunction"
    assert config["metadata"]["name"] == "shop-recommender"
    assert config["metadata"]["labels"]["nuclio.io/project-name"] == "shop"
    spec = config["spec"]
    assert (spec["runtime"], spec["handler"]) == ("python:3.11", "graphpack_entry:handler")
    assert spec["triggers"]["http"] == {"kind": "http", "numWorkers": 1,
                                        "attributes": {"maxRequestBodySize": 32 * 1024 * 1024}}
    assert spec["triggers"]["nightly"] == {"kind": "cron", "attributes": {
        "schedule": "0 2 * * *",
        "event": {"body": '{"op":"retrain"}', "headers": {"Content-Type": "application/json"}}}}
    assert spec["build"]["baseImage"] == "python:3.11-slim"
    assert spec["build"]["commands"] == ["pip install " + " ".join(
        f"{name}=={version(name)}" for name in ("PyYAML", "uvloop", "httptools", "boto3", "croniter", "scikit-learn"))]
    assert {"name": "GRAPHPACK_SPEC_FILE", "value": "/opt/graphpack/function/spec.json"} in spec["env"]
    assert not any(e["name"] == "GRAPHPACK_QUEUE_CONSUMER" for e in spec["env"])


def test_child_reads_an_s3_queue_with_graphpacks_consumer(design_project, tmp_path):
    out = built(design_project, tmp_path)
    config = yaml.safe_load((out / "enricher" / "function.yaml").read_text())
    assert config["metadata"]["name"] == "shop-recommender-enricher"
    assert config["metadata"]["labels"]["graphpack.io/child"] == "enricher"
    env = {e["name"]: e.get("value") for e in config["spec"]["env"]}
    assert env["GRAPHPACK_QUEUE_CONSUMER"] == "s3://bucket/queues/q1"
    assert env["GRAPHPACK_CONSUMER_GROUP"] == "shop-recommender-enricher"
    assert {t["kind"] for t in config["spec"]["triggers"].values()} == {"http"}  # no fake S3 trigger kind


def test_child_reads_a_v3io_queue_with_a_v3iostream_trigger(design_project, tmp_path):
    out = built(design_project, tmp_path, queue="v3io://users/pipelines/q1", shards=3)
    spec = yaml.safe_load((out / "enricher" / "function.yaml").read_text())["spec"]
    stream = spec["triggers"]["stream"]
    assert stream["kind"] == "v3ioStream" and stream["numWorkers"] == 3
    assert stream["attributes"] == {"containerName": "users", "streamPath": "/pipelines/q1",
                                    "consumerGroup": "shop-recommender-enricher", "seekTo": "earliest"}
    assert spec["minReplicas"] == spec["maxReplicas"] == 3
    assert not any(e["name"] == "GRAPHPACK_QUEUE_CONSUMER" for e in spec["env"])


def test_spec_files_tell_each_function_its_part(design_project, tmp_path):
    out = built(design_project, tmp_path)
    root, child = load_json(out / "recommender" / "spec.json"), load_json(out / "enricher" / "spec.json")
    assert "current_function" not in root and child["current_function"] == "enricher"
    assert root["graph"] == child["graph"]
    assert list(root["graph"]["steps"]) == ["pre-process", "q1", "enrich", "score"]  # declaration order
    for key in ("parameters", "error_stream"):
        assert child[key] == root[key]
    server = graphpack.GraphServer.from_dict(child)
    assert server.current_function == "enricher"


def test_children_inherit_secret_sources(design_project, tmp_path, monkeypatch):
    out = built(design_project, tmp_path, extra='fn.with_secrets("env", ["API_TOKEN"])\n')
    child = load_json(out / "enricher" / "spec.json")
    assert child["secret_sources"] == [{"kind": "env", "source": ["API_TOKEN"]}]


def test_every_config_matches_the_checked_in_schema(design_project, tmp_path):
    out = built(design_project, tmp_path, queue="v3io://users/q", extra=(
        'fn.with_secrets("env", ["API_TOKEN"]).with_secrets("file", "/etc/shop/secrets")\n'
        'fn.spec.resources = {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}\n'
        'fn.add_trigger("tick", graphpack.CronTrigger(interval="30s"))\n'))
    validator = jsonschema.Draft7Validator(function_schema())
    validator.check_schema(function_schema())
    for path in out.glob("*/function.yaml"):
        config = yaml.safe_load(path.read_text())
        assert list(validator.iter_errors(config)) == []
        assert schema_errors(config, function_schema()) == []


@pytest.mark.parametrize("mutate", [
    lambda c: c["spec"].update(bogus=1),
    lambda c: c["metadata"].update(name="Not_A_Label"),
    lambda c: c["spec"]["triggers"]["http"].update(kind="s3"),
    lambda c: c["spec"]["triggers"]["nightly"]["attributes"].update(interval="5m"),
    lambda c: c["spec"]["env"].append({"name": "X", "value": 3}),
])
def test_small_validator_agrees_with_jsonschema(design_project, tmp_path, mutate):
    config = yaml.safe_load((built(design_project, tmp_path) / "recommender" / "function.yaml").read_text())
    mutate(config)
    assert list(jsonschema.Draft7Validator(function_schema()).iter_errors(config))
    assert schema_errors(config, function_schema())


def test_reproducible_byte_for_byte(design_project, tmp_path):
    source = design_project(extra='fn.with_secrets("env", ["API_TOKEN"])\n')
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_build("-f", str(source), "-o", str(first)).exit_code == 0
    assert run_build("-f", str(source), "-o", str(second)).exit_code == 0
    tree = read_tree(first)
    assert tree == read_tree(second)
    assert run_build("-f", str(source), "-o", str(first)).exit_code == 0  # rebuild in place
    assert read_tree(first) == tree
    for path in first.rglob("*"):
        assert path.stat().st_mtime == 315532800
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.name == "graphpack" else 0o644)


def test_json_output_lists_what_was_written(design_project, tmp_path):
    out = tmp_path / "out"
    result = run_build("-f", str(design_project()), "-o", str(out), "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert [f["function"] for f in summary["functions"]] == ["recommender", "enricher"]
    for item in summary["functions"]:
        root = Path(item["path"])
        assert set(item["files"]) == set(read_tree(root))
        for rel, digest in item["files"].items():
            assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    assert summary["functions"][1]["input_queue"] == "s3://bucket/queues/q1"


def test_build_one_function(design_project, tmp_path):
    source = write_project(tmp_path / "two", '''
a = project.set_function("serving.py", name="alpha")
a.set_topology("flow", engine="sync").to(class_name="Echo", name="e")
b = project.set_function("serving.py", name="beta")
b.set_topology("flow", engine="sync").to(class_name="Echo", name="e")
''')
    out = tmp_path / "out"
    assert run_build("-f", str(source), "-o", str(out), "--function", "beta").exit_code == 0
    assert [p.name for p in out.iterdir()] == ["beta"]


def test_python_api(design_project, tmp_path, monkeypatch):
    from graphpack.source import load_source

    project = load_source(design_project())
    fn = project.get_function("recommender")
    assert fn.build_config()["metadata"]["name"] == "shop-recommender"
    assert fn.build_config("enricher")["metadata"]["name"] == "shop-recommender-enricher"
    summary = project.build_function("recommender", output=tmp_path / "api")
    assert [f["name"] for f in summary["functions"]] == ["shop-recommender", "shop-recommender-enricher"]
    assert (tmp_path / "api" / "enricher" / "function.yaml").is_file()


def test_yaml_project_builds(tmp_path):
    src = tmp_path / "proj"
    write_project(src, "")
    project = graphpack.Project("models", src)
    fn = project.set_function("serving.py", name="router-fn")
    fn.set_topology("router")
    fn.add_model("m1", class_name="Echo", model_path="/models/m1")
    project.save()
    out = tmp_path / "out"
    result = run_build("-f", str(src), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    spec = load_json(out / "router-fn" / "spec.json")
    assert spec["graph"]["kind"] == "router" and list(spec["graph"]["routes"]) == ["m1"]
    assert yaml.safe_load((out / "router-fn" / "function.yaml").read_text())["metadata"]["name"] == "models-router-fn"


def test_dockerfile(design_project, tmp_path):
    from graphpack.runtime.processor import HEALTH_PATH

    out = built(design_project, tmp_path, extra='fn.spec.build_commands = ["apt-get install -y libgomp1"]\n')
    text = (out / "recommender" / "Dockerfile").read_text()
    lines = text.splitlines()
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines and "FROM ${BASE_IMAGE}" in lines
    assert "RUN apt-get install -y libgomp1" in lines
    assert "--no-index" in text and "--find-links /tmp/graphpack/wheels" in text
    order = [next(i for i, line in enumerate(lines) if line.startswith(prefix)) for prefix in (
        "RUN apt-get", "COPY requirements.txt", "COPY wheels/", "COPY graphpack/", "COPY function.yaml", "USER")]
    assert order == sorted(order)  # dependencies first, the function's code last
    assert "serving.py" in lines[order[4]] and "graphpack_entry.py" in lines[order[4]]
    assert "USER 10001:10001" in lines
    assert f"127.0.0.1:%s{HEALTH_PATH}" in text
    assert lines[-1] == 'CMD ["python3", "-m", "graphpack.serve", "/opt/graphpack/function"]'
    child = (out / "enricher" / "Dockerfile").read_text()
    assert "enrich.py" in child and "serving.py" not in child


def test_inline_spec_env_fallback(design_project, tmp_path):
    from graphpack.source import load_source

    fn = load_source(design_project()).get_function("recommender")
    config = fn.build_config("enricher", inline_spec=True)
    env = {e["name"]: e.get("value") for e in config["spec"]["env"]}
    assert json.loads(env["GRAPHPACK_SPEC"]) == fn.serving_spec(current_function="enricher")
    assert "GRAPHPACK_SPEC" not in {e["name"] for e in fn.build_config()["spec"]["env"]}
