"""End to end with the real Docker engine: `graphpack build --image` with each builder ->
push -> docker pull -> docker image inspect / skopeo inspect -> run (--network host) -> invoke;
both images answer the same. And `graphpack base-image`."""
import json
import shutil
import subprocess
import time

import httpx
from click.testing import CliRunner

from graphpack.cli import main
from tests.plugins.net import free_port


def build_image(context_root, builder, registry):
    result = CliRunner().invoke(main, ["build", "-f", str(context_root / "project.py"), "-o", str(context_root / "out"),
                                       "--target", "docker", "--image", "--builder", builder, "--registry", registry,
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["images"][0]


PROJECT = '''
import graphpack

project = graphpack.get_or_create_project("e2e", "./")
fn = project.set_function("serving.py", name="echo")
fn.with_secrets("env", ["API_TOKEN"])
fn.set_topology("flow", engine="sync").to(class_name="Echo", name="echo", tag="e2e").respond()
'''


def test_both_builders_build_push_pull_run_and_answer_the_same(registry, base_image, wheels, tmp_path, docker_engine,
                                                              secret_env, monkeypatch):
    from .conftest import CODE

    root = tmp_path / "proj"
    root.mkdir()
    (root / "serving.py").write_text(CODE)
    (root / "project.py").write_text(PROJECT)
    monkeypatch.chdir(root)
    images = {name: build_image(root, name, registry.host) for name in ("oci", "docker")}
    containers = {}
    try:
        for name, image in images.items():
            docker_engine.api.pull(image["pinned"].split("@")[0], tag=image["digest"])
            inspect = docker_engine.api.inspect_image(image["pinned"])
            config = inspect["Config"]
            assert config["User"] == "10001:10001" and config["Cmd"][:3] == ["python3", "-m", "graphpack.serve"]
            assert config["Healthcheck"]["Test"][0] == "CMD-SHELL"
            assert image["pinned"] in inspect["RepoDigests"]
            if shutil.which("skopeo"):
                out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{image['pinned']}"],
                                     capture_output=True, text=True)
                assert out.returncode == 0, out.stderr
                assert json.loads(out.stdout)["Digest"] == image["digest"]
            port = free_port()
            containers[name] = (docker_engine.containers.run(
                image["pinned"], detach=True, network_mode="host",
                environment={"PORT": str(port), "API_TOKEN": secret_env}), port)
        answers = {}
        for name, (container, port) in containers.items():
            answers[name] = invoke(port, {"n": 1}, container)
        assert answers["oci"] == answers["docker"] == {"echo": {"n": 1}, "tag": "e2e", "token_len": len(secret_env)}
        # Docker runs the HEALTHCHECK: both containers turn healthy
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            states = {}
            for name, (container, _) in containers.items():
                container.reload()
                states[name] = container.attrs["State"].get("Health", {}).get("Status")
            if set(states.values()) == {"healthy"}:
                break
            time.sleep(0.5)
        assert set(states.values()) == {"healthy"}, states
    finally:
        for container, _ in containers.values():
            container.remove(force=True)
        for image in images.values():
            for ref in (image["pinned"], image["image"]):
                try:
                    docker_engine.images.remove(ref)
                except Exception:  # noqa: BLE001 - the docker-built tag may share the pulled image
                    pass


def invoke(port, body, container, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.post(f"http://127.0.0.1:{port}/", json=body, timeout=5).json()
        except httpx.HTTPError:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_base_image_command_pushes_and_is_cached(registry, base_image):
    runner = CliRunner()
    started = time.perf_counter()
    result = runner.invoke(main, ["base-image", "--registry", registry.host, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["digest"] == base_image.digest
    assert info["pushed"] == f"{registry.host}/{info['name']}@{base_image.digest}"
    assert time.perf_counter() - started < 15
    with registry.client() as client:
        repo, _, tag = info["name"].partition(":")
        assert client.pull_image(repo, tag).digest == base_image.digest
        user = [line for line in _file(client, repo, base_image, "etc/passwd").splitlines() if "10001" in line]
    assert user == ["graphpack:x:10001:10001:graphpack:/tmp:/usr/sbin/nologin"]


def _file(client, repo, image, path):
    import gzip
    import io
    import tarfile

    blob = client.get_blob(repo, image.layers[0].digest)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.extractfile(path).read().decode()


def test_push_without_a_registry_is_a_clear_error(tmp_path, monkeypatch):
    from .conftest import CODE

    monkeypatch.delenv("GRAPHPACK_REGISTRY", raising=False)
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "project.py").write_text(PROJECT)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["build", "-f", "project.py", "--image"])
    assert result.exit_code == 1
    assert "error: pushing needs a registry: --registry HOST[:PORT] or $GRAPHPACK_REGISTRY (or --no-push)" \
        in result.output
