"""The daemonless OCI builder: reproducible digests, layer reuse, config, limits (daemonless.py)."""
import json
import shutil
import subprocess
import time

import pytest

from graphpack import GraphpackError
from graphpack.packager.images.builder import layer_files
from graphpack.packager.images.daemonless import OCIBuilder
from graphpack.packager.images.oci import write_layout

from .conftest import repo


def test_two_clean_builds_in_different_places_and_times_give_one_digest(
        registry, base_image, wheels, tmp_path, monkeypatch, secret_env):
    from .conftest import write_function

    first_ctx = write_function(tmp_path / "one", wheels)
    with registry.client() as client:
        first = OCIBuilder(base=base_image, registry=client).build(first_ctx, f"{registry.host}/{repo()}:a")
    time.sleep(1.1)
    # a clean cache: the requirements layer is installed again from the wheels
    monkeypatch.setenv("GRAPHPACK_CACHE", str(tmp_path / "fresh-cache"))
    second_ctx = write_function(tmp_path / "elsewhere" / "two", wheels)
    builder = OCIBuilder(base=base_image)
    with registry.client() as client:
        builder.registry = client
        second = builder.build(second_ctx, f"{registry.host}/{repo()}:b")
    assert (tmp_path / "fresh-cache" / "images" / "layers").is_dir(), "the second build did not install afresh"
    assert first.digest == second.digest
    layers = builder.last.layers
    assert len(layers) == len(base_image.layers) + 2
    req = layer_files(layers[-2].read())[1]
    assert "usr/local/lib/python3.11/dist-packages/yaml/__init__.py" in req
    assert "usr/local/lib/python3.11/dist-packages/uvloop/__init__.py" in req
    assert not any("click" in path for path in req), "the CLI's click inside the image"


def test_code_only_rebuild_uploads_one_layer_and_the_config(registry, base_image, make_context):
    context = make_context()
    name = f"{registry.host}/{repo()}:v1"
    with registry.client() as client:
        builder = OCIBuilder(base=base_image, registry=client)
        first = builder.build(context, name)
        first_layers = builder.last.layers
        before = client.uploads
        (context / "serving.py").write_text((context / "serving.py").read_text() + "\n# changed\n")
        started = time.perf_counter()
        second = builder.build(context, name)
        elapsed = time.perf_counter() - started
        assert client.uploads - before == 2, "only the code layer and the config are new"
        assert second.digest != first.digest
        assert builder.last.layers[:-1] == first_layers[:-1]
        assert builder.last.layers[-1] != first_layers[-1]
        assert elapsed < 2.0, f"code-only rebuild took {elapsed:.2f}s"


def test_config_matches_the_dockerfile(base_image, make_context):
    image = OCIBuilder(base=base_image, push=False).assemble(make_context())
    config = json.loads(image.config_blob())
    container = config["config"]
    assert container["User"] == "10001:10001"
    assert container["WorkingDir"] == "/opt/graphpack/function"
    assert container["Cmd"] == ["python3", "-m", "graphpack.serve", "/opt/graphpack/function"]
    assert container["ExposedPorts"] == {"8080/tcp": {}}
    assert container["Healthcheck"]["Test"][0] == "CMD-SHELL" and container["Healthcheck"]["Retries"] == 3
    env = dict(e.split("=", 1) for e in container["Env"])
    assert env["GRAPHPACK_SPEC_FILE"] == "/opt/graphpack/function/spec.json"
    assert env["PATH"].startswith("/usr/local/sbin:/usr/local/bin")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert len(config["rootfs"]["diff_ids"]) == len(image.layers) == len(config["history"])
    code = layer_files(image.layers[-1].read())[1]
    assert "usr/local/bin/graphpack" not in code and "opt/graphpack/function/graphpack/cli.py" not in code
    assert code["opt/graphpack/function/spec.json"].uid == 0
    assert not any(path.startswith("tmp/") for path in code)


def test_source_date_epoch_sets_created(base_image, make_context, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = OCIBuilder(base=base_image, push=False).assemble(make_context())
    assert json.loads(image.config_blob())["created"] == "2023-11-14T22:13:20Z"


def test_build_commands_need_docker(base_image, make_context):
    context = make_context()
    dockerfile = context / "Dockerfile"
    text = dockerfile.read_text().replace("# dependencies first", "RUN apt-get install -y curl\n# dependencies first")
    dockerfile.write_text(text)
    with pytest.raises(GraphpackError, match="cannot run build commands .*use --builder docker"):
        OCIBuilder(base=base_image, push=False).assemble(context)


def test_missing_wheel_is_a_clear_error(base_image, make_context):
    context = make_context()
    (context / "requirements.txt").write_text("PyYAML>=6\nclick>=8.1\nnot-a-real-package-graphpack==1.0\n")
    with pytest.raises(GraphpackError, match="installing the requirements from the wheels failed"):
        OCIBuilder(base=base_image, push=False).assemble(context)


def test_oci_layout_passes_skopeo_inspect(base_image, make_context, tmp_path):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed (Debian skopeo; scripts/test.sh installs it)")
    image = OCIBuilder(base=base_image, push=False).assemble(make_context())
    layout = write_layout(image, tmp_path / "layout", "v1")
    out = subprocess.run(["skopeo", "inspect", f"oci:{layout}:v1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["Digest"] == image.digest
    assert info["Layers"] == [layer.digest for layer in image.layers]
    raw = subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:v1"], capture_output=True, text=True)
    assert json.loads(raw.stdout)["config"]["User"] == "10001:10001"
