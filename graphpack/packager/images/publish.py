"""Publishers: what happens to a built image value. Push it to a registry, load it into a
Docker engine (``docker load`` of a docker-archive), or write an OCI layout directory."""
from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from ...errors import GraphpackError
from .oci import Image, write_layout
from .registry import Reference, Registry

__all__ = ["docker_archive", "load_into_docker", "push", "write_layout"]


def push(image: Image, tag: str, registry: Registry | None = None, progress: Any = None) -> str:
    """Push ``image`` as ``tag`` (host/repo:tag); returns the manifest digest. Blobs the
    repository has are not uploaded again; blobs in another repository of the registry are mounted."""
    ref = Reference.parse(tag)
    own = registry is None
    registry = registry or Registry(ref.host)
    if registry.host != ref.host:
        raise GraphpackError(f"cannot push {tag} with a client for registry {registry.host}")
    try:
        return registry.push_image(image, ref.repo, ref.tag, progress)
    finally:
        if own:
            registry.close()


def docker_archive(image: Image, tag: str) -> bytes:
    """``image`` as a docker-archive tarball (what ``docker load`` reads); layers must be local."""
    buffer = io.BytesIO()
    config = image.config_blob()
    config_name = image.config_digest.split(":")[1] + ".json"
    layers = []
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add(config_name, config)
        for layer in image.layers:
            name = layer.digest.split(":")[1] + "/layer.tar"   # gzipped: docker load decompresses it
            add(name, layer.read())
            layers.append(name)
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layers}]).encode())
    return buffer.getvalue()


def load_into_docker(image: Image, tag: str, client: Any = None) -> str:
    """Load ``image`` into the Docker engine as ``tag``; returns the image id."""
    from .docker_engine import docker_client, docker_errors

    client = client or docker_client()
    with docker_errors("docker load"):
        client.api.load_image(docker_archive(image, tag), quiet=True)
        return client.api.inspect_image(tag)["Id"]
