"""One contract suite, run against every image builder (builder.py check_image_builder)."""
import re

import pytest

from graphpack.packager.images import FixedBuilder, ImageRef, get_builder
from graphpack.packager.images.builder import check_image_builder

from .conftest import repo


@pytest.fixture(params=["oci", "docker"])
def builder_name(request):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return request.param


def test_builder_contract(builder_name, auth_registry, base_image, make_context, secret_env):
    context = make_context()
    with auth_registry.client() as client:
        builder = get_builder(builder_name, base=base_image, registry=client)
        tag = f"{auth_registry.host}/{repo(builder_name)}:v1"
        ref = check_image_builder(builder, context, tag, client, secrets=[secret_env])
    assert isinstance(ref, ImageRef) and ref.pinned == tag.rsplit(":", 1)[0] + "@" + ref.digest
    if builder_name == "docker":
        builder.client.images.remove(tag)


def test_fixed_builder_is_a_fake_with_stable_digests(make_context):
    context = make_context()
    fake = FixedBuilder()
    first = fake.build(context, "r:1/x:1")
    assert fake.build(context, "r:1/x:1") == first and fake.builds == [(str(context), "r:1/x:1")] * 2
    (context / "serving.py").write_text("changed\n")
    assert fake.build(context, "r:1/x:1").digest != first.digest


def test_unknown_builder_names_the_known_ones():
    from graphpack import GraphpackError

    with pytest.raises(GraphpackError, match=r"unknown image builder 'kaniko' \(known: docker, fixed, oci\)"):
        get_builder("kaniko")


def test_the_contract_catches_a_secret_baked_into_a_layer(registry, base_image, make_context, secret_env):
    from graphpack.packager.images.daemonless import OCIBuilder

    class Leaky(OCIBuilder):
        def build(self, context, tag):
            (context / "token.txt").write_text(secret_env)
            dockerfile = (context / "Dockerfile").read_text()
            if "token.txt" not in dockerfile:
                (context / "Dockerfile").write_text(dockerfile.replace("USER ", "COPY token.txt /etc/token\nUSER ", 1))
            return super().build(context, tag)

    with registry.client() as client:
        leaky = Leaky(base=base_image, registry=client)
        with pytest.raises(AssertionError, match="secrets found in layers"):
            check_image_builder(leaky, make_context(), f"{registry.host}/{repo()}:v1", client, secrets=[secret_env])


@pytest.fixture(params=["oci", "docker"])
def any_builder(request):
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
    return request.param


def test_a_from_with_a_registry_host_is_the_base(any_builder, registry, base_image, make_context):
    """Both builders take the Dockerfile's FROM when it names a registry (here: graphpack's
    base pushed under another name), so a user's own base image is honoured."""
    from graphpack.packager.images.publish import push

    base_ref = f"{registry.host}/{repo('base')}:1"
    with registry.client() as client:
        push(base_image, base_ref, client)
        context = make_context()
        dockerfile = context / "Dockerfile"
        dockerfile.write_text(re.sub(r"(?m)^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={base_ref}", dockerfile.read_text()))
        assert f"ARG BASE_IMAGE={base_ref}" in dockerfile.read_text()
        builder = get_builder(any_builder, registry=client)
        tag = f"{registry.host}/{repo(any_builder)}:v1"
        builder.build(context, tag)
        data, _ = client.get_manifest(*tag.split("/", 1)[1].split(":"))
    import json

    layers = [layer["digest"] for layer in json.loads(data)["layers"]]
    if any_builder == "oci":
        assert layers[0] == base_image.layers[0].digest and client.mounts >= 1
    assert len(layers) >= 3
    if any_builder == "docker":
        builder.client.images.remove(tag)
