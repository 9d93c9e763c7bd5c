"""The Docker engine builder (docker-py): ``docker build`` of the generated Dockerfile with
build output streamed as progress, then tag and push. Docker errors become GraphpackError here."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ...errors import GraphpackError
from . import baseimage
from .builder import ImageBuilder, ImageRef, Progress
from .oci import Image
from .registry import Reference, Registry


def docker_client() -> Any:
    """A docker-py client from the environment ($DOCKER_HOST or the local socket)."""
    try:
        import docker
    except ImportError:
        raise GraphpackError("the docker builder needs docker-py: pip install 'graphpack[docker]'") from None
    with docker_errors("connect"):
        client = docker.from_env(timeout=300)
        client.ping()
    return client


@contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate docker-py and transport errors into one-line GraphpackErrors."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.BuildError as exc:
        raise GraphpackError(f"docker build failed: {exc.msg}") from None
    except docker.errors.ImageNotFound as exc:
        raise GraphpackError(f"docker {what}: image not found: {exc.explanation}") from None
    except docker.errors.APIError as exc:
        raise GraphpackError(f"docker {what} failed: {exc.explanation or exc}") from None
    except docker.errors.DockerException as exc:
        raise GraphpackError(f"the Docker engine is not reachable ({what}): {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise GraphpackError(f"the Docker engine is not reachable ({what}): {exc}") from None


def ensure_base_in_docker(client: Any, base: Image, progress: Progress) -> str:
    """Load graphpack's base image into the engine (once; by content tag); returns its tag."""
    from .publish import load_into_docker

    tag = f"{baseimage.BASE_REPO}:{baseimage.base_tag(base)}"
    with docker_errors("inspect base"):
        import docker.errors

        try:
            client.api.inspect_image(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
    progress(f"loading the base image into Docker as {tag}")
    load_into_docker(base, tag, client)
    return tag


class DockerBuilder(ImageBuilder):
    """Builds with the Docker engine. ``base``: an image the engine has or can pull, an Image
    value (loaded into the engine), or None: the Dockerfile's FROM when it names a registry
    host, else graphpack's base. ``push`` pushes the tag
    (credentials from ``registry`` when given) and returns the pushed manifest digest;
    without push the digest is the engine's image id."""

    name = "docker"

    def __init__(self, base: Image | str | None = None, registry: Registry | None = None, push: bool = True,
                 progress: Progress | None = None, client: Any = None, nocache: bool = False) -> None:
        self.base = base
        self.registry = registry
        self.push = push
        self.progress = progress or (lambda message: None)
        self._client = client
        self.nocache = nocache

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def base_tag(self) -> str:
        base = self.base if self.base is not None else baseimage.build_base(self.progress)
        if isinstance(base, Image):
            return ensure_base_in_docker(self.client, base, self.progress)
        return base

    def build(self, context: str | Path, tag: str) -> ImageRef:
        root = Path(context)
        if not (root / "Dockerfile").is_file():
            raise GraphpackError(f"{root} has no Dockerfile (run `graphpack build` first)")
        from .daemonless import _has_host
        from .dockerfile import parse

        declared = parse((root / "Dockerfile").read_text()).base
        # same rule as the daemonless builder: a FROM naming a registry host is used as is
        base = declared if self.base is None and _has_host(declared) else self.base_tag()
        api = self.client.api
        image_id = ""
        with docker_errors("build"):
            for chunk in api.build(path=str(root), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True, forcerm=True,
                                   network_mode="host", pull=False, decode=True, nocache=self.nocache):
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise GraphpackError(f"docker build of {root.name} failed: {detail.strip()}")
                text = (chunk.get("stream") or "").rstrip()
                if text:
                    self.progress(text)
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
        if not image_id:
            with docker_errors("inspect"):
                image_id = api.inspect_image(tag)["Id"]
        if not self.push:
            return ImageRef(tag, image_id)
        return ImageRef(tag, self._push(tag))

    def _push(self, tag: str) -> str:
        ref = Reference.parse(tag)
        auth = None
        if self.registry is not None and self.registry.username:
            auth = {"username": self.registry.username, "password": self.registry.password or ""}
        digest = ""
        with docker_errors("push"):
            for chunk in self.client.api.push(f"{ref.host}/{ref.repo}", tag=ref.tag, stream=True, decode=True,
                                              auth_config=auth):
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise GraphpackError(f"docker push {tag} failed: {detail}")
                if chunk.get("status") and chunk.get("id") is None:
                    self.progress(chunk["status"])
                digest = (chunk.get("aux") or {}).get("Digest", digest)
        if not digest:
            raise GraphpackError(f"docker push {tag} reported no digest")
        return digest


__all__ = ["DockerBuilder", "docker_client", "docker_errors", "ensure_base_in_docker"]
