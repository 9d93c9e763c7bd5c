"""The docker target with the real Docker engine and a real registry (deploy/docker.py)."""
import json
import time
import uuid

import httpx
import pytest
from click.testing import CliRunner

import graphpack
from graphpack import GraphpackError
from graphpack.cli import main
from graphpack.packager.deploy import check_deployer, get_deployer
from tests.plugins.net import free_port

CODE = '''
import os


class Pre:
    def __init__(self, context=None, name=None, tag="v1"):
        self.context = context
        self.tag = tag

    def do(self, body):
        token = self.context.get_secret("API_TOKEN") or ""
        return {"body": body, "tag": self.tag, "token_len": len(token), "uid": os.getuid()}
'''


@pytest.fixture
def project(tmp_path, monkeypatch, docker_engine):
    monkeypatch.setenv("API_TOKEN", "tok-" + uuid.uuid4().hex)
    (tmp_path / "serving.py").write_text(CODE)
    name = "d" + uuid.uuid4().hex[:6]
    project = graphpack.get_or_create_project(name, str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.with_secrets("env", ["API_TOKEN"])
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond()
    fn.with_http(workers=1, port=free_port())
    yield project
    try:
        get_deployer("docker", str(tmp_path)).delete(purge=True)
    except GraphpackError:
        pass


@pytest.mark.parametrize("builder", ["oci", "docker"])
def test_docker_target_contract_through_a_registry(project, builder, tmp_path):
    from graphpack.packager.images.testing import registry_available, run_registry

    if not registry_available():
        pytest.skip("docker-registry is not installed (scripts/test.sh installs it)")
    with run_registry() as registry:
        deployer = get_deployer("docker", project.context, builder=builder, registry=registry.host)
        expected = {"body": {"x": 1}, "tag": "v1", "token_len": 36, "uid": 10001}
        check_deployer(deployer, project, "root", "/", {"x": 1}, expected)


def test_cli_deploy_status_invoke_logs_down_without_a_registry(project, monkeypatch):
    monkeypatch.delenv("GRAPHPACK_REGISTRY", raising=False)
    directory = project.context
    project.save()
    runner = CliRunner()
    deployed = runner.invoke(main, ["deploy", "-f", directory, "--target", "docker"], catch_exceptions=False)
    assert deployed.exit_code == 0, deployed.output
    status = runner.invoke(main, ["status", "--target", "docker", "-C", directory, "--json"])
    info = json.loads(status.output)["root"]
    assert info["state"] == "running" and info["image"].startswith(f"graphpack.local/{project.name}/root:")
    answer = runner.invoke(main, ["invoke", "root", "/", "-d", '{"a": 2}', "--target", "docker", "-C", directory])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output.strip().splitlines()[-1])["body"] == {"a": 2}
    logs = runner.invoke(main, ["logs", "root", "--target", "docker", "-C", directory])
    assert "worker 0 ready" in logs.output
    # unchanged: nothing to do; changed code: the container is replaced
    from graphpack.source import load_source

    again = get_deployer("docker", directory).plan(load_source(directory))
    assert not again.changes
    down = runner.invoke(main, ["down", "--target", "docker", "-C", directory])
    assert down.exit_code == 0 and "stopped 1 function(s): root" in down.output
    assert get_deployer("docker", directory).status() == {}
    kept = runner.invoke(main, ["logs", "root", "--target", "docker", "-C", directory])
    assert kept.exit_code == 0 and "worker 0 ready" in kept.output  # the container is gone, its log is not
    purged = runner.invoke(main, ["down", "--purge", "--target", "docker", "-C", directory])
    assert purged.exit_code == 0
    gone = runner.invoke(main, ["logs", "root", "--target", "docker", "-C", directory])
    assert gone.exit_code == 1 and "is not deployed" in gone.output


def test_missing_secret_is_a_clear_error(project, monkeypatch):
    monkeypatch.delenv("API_TOKEN")
    deployer = get_deployer("docker", project.context)
    with pytest.raises(GraphpackError, match="needs API_TOKEN in the environment"):
        deployer.apply(deployer.plan(project))
    assert deployer.status() == {}


CHILD = '''
class Writer:
    def do(self, body):
        print("child got", body, flush=True)
        return body
'''


def test_root_and_child_joined_by_a_file_queue_in_a_bind_mount(tmp_path, docker_engine):
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    project = graphpack.get_or_create_project("q" + uuid.uuid4().hex[:6], str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path="").to(class_name="Writer", name="write", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_http(workers=1, port=free_port())
    deployer = get_deployer("docker", str(tmp_path))
    try:
        status = deployer.apply(deployer.plan(project))
        assert set(status) == {"root", "child"} and {s["state"] for s in status.values()} == {"running"}
        answer = deployer.invoke("root", "/", {"n": 7})
        assert answer.body["body"] == {"n": 7} and answer.body["uid"] == 10001
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = [line for line in deployer.logs("child") if "child got" in line]
            if lines:
                break
            time.sleep(0.2)
        assert lines and "'n': 7" in lines[0] and "'tag': 'v1'" in lines[0]
        # graphpack serve's /metrics in the containers (uid 10001): the root pushed, the child consumed
        root = httpx.get(status["root"]["url"] + "/metrics", timeout=5).text
        child = httpx.get(status["child"]["url"] + "/metrics", timeout=5).text
        assert 'graphpack_queue_records_pushed_total{function="' in root and 'queue="q1"} 1' in root
        assert 'graphpack_queue_records_consumed_total{' in child and 'shard="0"} 1' in child
    finally:
        deployer.delete(purge=True)
    assert deployer.status() == {}


FILE_CODE = '''
class Reveal:
    def __init__(self, context=None, name=None):
        self.context = context

    def do(self, body):
        return {"db": self.context.get_secret("DB_PASSWORD")}
'''


def test_file_secret_is_mounted_read_only_at_run_time(tmp_path, docker_engine):
    secrets = tmp_path / "secrets.json"
    value = "pw-" + uuid.uuid4().hex
    secrets.write_text(json.dumps({"DB_PASSWORD": value}))
    secrets.chmod(0o644)
    (tmp_path / "serving.py").write_text(FILE_CODE)
    project = graphpack.get_or_create_project("s" + uuid.uuid4().hex[:6], str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.with_secrets("file", str(secrets))
    fn.set_topology("flow", engine="sync").to(class_name="Reveal", name="reveal").respond()
    fn.with_http(workers=1, port=free_port())
    deployer = get_deployer("docker", str(tmp_path))
    try:
        deployer.apply(deployer.plan(project))
        assert deployer.invoke("root", "/", {}).body == {"db": value}
        # the value is in no file of the build context either
        build = tmp_path / ".graphpack" / "docker-build" / "root"
        assert not [p for p in build.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
    finally:
        deployer.delete(purge=True)


def test_a_file_error_stream_is_bind_mounted(tmp_path, docker_engine):
    """A relative file error stream is the project directory's, in the container too (it was
    written inside the container, lost with it)."""
    from graphpack.queues import open_queue

    (tmp_path / "serving.py").write_text('''
class Fail:
    def do(self, body):
        raise ValueError("refused")
''')
    project = graphpack.get_or_create_project("e" + uuid.uuid4().hex[:6], str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Fail", name="fail")
    fn.spec.error_stream = "errors"
    fn.with_http(workers=1, port=free_port())
    deployer = get_deployer("docker", str(tmp_path))
    try:
        deployer.apply(deployer.plan(project))
        assert deployer.invoke("root", "/", {"n": 1}).status_code == 500
        with open_queue(str(tmp_path / "errors")) as errors:
            failures = [item.record() for item in errors.read(0, "inspect", max_records=10)]
        assert [f["step"] for f in failures] == ["fail"]
    finally:
        deployer.delete(purge=True)
