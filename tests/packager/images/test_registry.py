"""The registry client against real docker-registry instances (registry.py)."""
import json
import os

import pytest

from graphpack import GraphpackError
from graphpack.packager.images.oci import LAYER_TYPE, Image, Layer, append, new_config, sha256
from graphpack.packager.images.registry import Reference, Registry

from .conftest import repo


def small_image(text: bytes = b"hello") -> Image:
    import io

    from graphpack.packager.images.tarball import Entry, write_layer

    out = io.BytesIO()
    blob = write_layer([Entry("hello.txt", data=text)], out)
    layer = Layer(blob.digest, blob.size, blob.diff_id, LAYER_TYPE, data=out.getvalue())
    return append(Image(new_config({"Cmd": ["cat", "/hello.txt"]})), layer, "test")


def test_reference_parsing():
    ref = Reference.parse("127.0.0.1:5000/shop/recommender:v2")
    assert (ref.host, ref.repo, ref.tag, ref.digest) == ("127.0.0.1:5000", "shop/recommender", "v2", "")
    pinned = Reference.parse("localhost/a/b@sha256:" + "0" * 64)
    assert pinned.ref == "sha256:" + "0" * 64 and pinned.tag == "latest"
    assert Reference.parse("shop/x", default_host="r.example:443").host == "r.example:443"
    with pytest.raises(GraphpackError, match="names no registry host"):
        Reference.parse("shop/x")
    with pytest.raises(GraphpackError, match="not an image reference"):
        Reference.parse("Bad Name")


def test_push_pull_and_blobs_already_there_are_not_uploaded(registry):
    name = repo()
    image = small_image()
    with registry.client() as client:
        assert client.push_image(image, name, "v1") == image.digest
        assert client.uploads == 2              # the layer and the config
        client.push_image(image, name, "v2")
        assert client.uploads == 2              # nothing again
        data, media_type = client.get_manifest(name, "v1")
        assert sha256(data) == image.digest and media_type == "application/vnd.oci.image.manifest.v1+json"
        pulled = client.pull_image(name, "v2")
        assert pulled.digest == image.digest and pulled.layers[0].origin == f"{registry.host}/{name}"
        # another repository of the same registry: mounted, not uploaded
        other = repo()
        client.push_image(pulled, other, "v1")
        assert client.uploads == 3 and client.mounts == 1   # only the config blob went up
        assert client.get_blob(other, image.layers[0].digest) == image.layers[0].data


def test_basic_auth_good_and_bad_credentials(auth_registry):
    name = repo()
    with auth_registry.client() as client:
        client.ping()
        client.push_image(small_image(), name, "v1")
    with auth_registry.client(password="wrong") as bad, pytest.raises(GraphpackError) as info:
        bad.pull_image(name, "v1")
    assert str(info.value) == f"registry {auth_registry.host} refused access with user 'graphpack'"
    with Registry(auth_registry.host, username="") as anonymous:
        with pytest.raises(GraphpackError, match="needs credentials"):
            anonymous.ping()


def test_credentials_from_environment_and_docker_config(auth_registry, tmp_path, monkeypatch):
    import base64

    with pytest.raises(GraphpackError):  # no credentials: the registry refuses
        with Registry(auth_registry.host) as client:
            client.ping()
    monkeypatch.setenv("GRAPHPACK_REGISTRY_USERNAME", auth_registry.username)
    monkeypatch.setenv("GRAPHPACK_REGISTRY_PASSWORD", auth_registry.password)
    with Registry(auth_registry.host) as client:
        client.ping()  # raises when the credentials from the environment are not used
    monkeypatch.delenv("GRAPHPACK_REGISTRY_USERNAME")
    monkeypatch.delenv("GRAPHPACK_REGISTRY_PASSWORD")
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with Registry(auth_registry.host) as client:
        client.ping()  # raises when ~/.docker/config.json's credentials are not used


def test_unreachable_registry_and_missing_image(registry):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Registry(f"127.0.0.1:{port}") as client, pytest.raises(GraphpackError, match="is unreachable"):
        client.ping()
    with registry.client() as client, pytest.raises(GraphpackError, match="does not exist"):
        client.get_manifest(repo(), "nope")


def test_https_for_remote_hosts_http_for_loopback():
    assert Registry("127.0.0.1:5000").scheme == "http"
    assert Registry("localhost:5000").scheme == "http"
    assert Registry("registry.example.com").scheme == "https"
    assert Registry("registry.example.com", insecure=True).scheme == "http"
    assert os.environ.get("GRAPHPACK_REGISTRY_USERNAME") is None


@pytest.fixture(scope="module")
def token_registry():
    from graphpack.packager.images.testing import registry_available, run_registry

    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian docker-registry; scripts/test.sh installs it)")
    with run_registry("robot", "token-pw", token=True) as running:
        yield running


def test_bearer_token_auth(token_registry):
    name = repo()
    image = small_image(b"bearer")
    with token_registry.client() as client:
        assert client.push_image(image, name, "v1") == image.digest
        assert client.pull_image(name, "v1").digest == image.digest
        assert all(value.startswith("Bearer ") for value in client._auth.values())
    with token_registry.client(password="nope") as bad, pytest.raises(GraphpackError) as info:
        bad.pull_image(name, "v1")
    assert str(info.value) == f"registry {token_registry.host} refused access with user 'robot'"
