"""The daemonless OCI builder: no Docker, no container runs. It reads the generated
Dockerfile (the subset graphpack renders), reuses the base image's layers by digest, adds one
layer for the requirements (wheels installed on the host, cached by content) and one for the
code and spec, and pushes through the registry HTTP API. Same context -> same digest."""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from ...errors import GraphpackError
from . import baseimage
from .builder import ImageBuilder, ImageRef, Progress
from .dockerfile import Recipe, parse
from .oci import BlobStore, Image, Layer, append, with_container_config
from .publish import push
from .registry import Reference, Registry
from .tarball import Entry, write_layer
from .wheels import requirements_layer

BUILD_INPUTS = "/tmp/graphpack"   # COPY destinations the requirements RUN consumes and deletes


def _is_requirements_run(text: str) -> bool:
    return "requirements.txt" in text and "pip" in text and "--no-index" in text


def _has_host(ref: str) -> bool:
    """True when an image reference names a registry host (``host[:port]/repo``)."""
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")


class OCIBuilder(ImageBuilder):
    """Builds images without a daemon.

    ``base``: an Image value, a registry reference, or None for graphpack's own base (built
    from Debian packages, cached). A Dockerfile FROM that names a registry host is used when no
    ``base`` is given. ``registry``: the client to push with (made from the tag's host by
    default); ``push=False`` only assembles (``build`` then returns the local digest)."""

    name = "oci"

    def __init__(self, base: Image | str | None = None, registry: Registry | None = None, push: bool = True,
                 progress: Progress | None = None, store: BlobStore | None = None, load: bool = False) -> None:
        self.base = base
        self.load = load
        self.registry = registry
        self.push = push
        self.progress = progress or (lambda message: None)
        self.store = store or BlobStore(baseimage.cache_dir() / "blobs")
        self._bases: dict[str, Image] = {}
        self.last: Image | None = None

    # -- build ------------------------------------------------------------------------------
    def build(self, context: str | Path, tag: str) -> ImageRef:
        image = self.assemble(context)
        self.last = image
        if self.load:
            from .publish import load_into_docker

            load_into_docker(image, tag)
            self.progress(f"loaded {tag} into Docker")
        if not self.push:
            return ImageRef(tag, image.digest)
        registry = self.registry
        if registry is not None and registry.host != Reference.parse(tag).host:
            raise GraphpackError(f"tag {tag} is not in registry {registry.host}")
        digest = push(image, tag, registry, self.progress)
        self.progress(f"pushed {tag}@{digest}")
        return ImageRef(tag, digest)

    def assemble(self, context: str | Path) -> Image:
        """The image value of ``context`` (no registry writes; reads a remote base's config once)."""
        root = Path(context)
        dockerfile = root / "Dockerfile"
        if not dockerfile.is_file():
            raise GraphpackError(f"{root} has no Dockerfile (run `graphpack build` first)")
        recipe = parse(dockerfile.read_text())
        image = self._base(recipe)
        labels = image.container_config.get("Labels") or {}
        site = labels.get(baseimage.LABEL_SITE) or baseimage.SITE_PACKAGES
        for run in recipe.runs:
            if not _is_requirements_run(run.args):
                raise GraphpackError(f"Dockerfile line {run.line}: the daemonless builder cannot run build commands "
                                     f"({run.args[:60]!r}); use --builder docker")
            requirements = self._input(root, recipe, "requirements.txt")
            wheels = self._input(root, recipe, "wheels/")
            self.progress(f"{root.name}: layer of the requirements (installing the wheels)")
            layer = requirements_layer((root / requirements).read_bytes() if requirements else b"",
                                       root / (wheels or "wheels"), site, self.store)
            if layer is not None:
                self.progress(f"{root.name}: layer {layer.digest[7:19]} requirements ({layer.size / 1e6:.1f} MB)")
                image = append(image, layer, "graphpack: requirements from wheels")
        code = self._code_layer(root, recipe)
        self.progress(f"{root.name}: layer {code.digest[7:19]} code and spec ({code.size / 1e6:.1f} MB)")
        image = append(image, code, "graphpack: code and spec")
        return self._configure(image, recipe)

    def _base(self, recipe: Recipe) -> Image:
        base = self.base
        if base is None and _has_host(recipe.base):
            base = recipe.base
        if base is None:
            return baseimage.build_base(self.progress)
        if isinstance(base, Image):
            return base
        if base not in self._bases:
            ref = Reference.parse(base)
            if self.registry is not None and self.registry.host == ref.host:
                self._bases[base] = self.registry.pull_image(ref.repo, ref.ref)
            else:
                with Registry(ref.host) as registry:
                    self._bases[base] = registry.pull_image(ref.repo, ref.ref)
        return self._bases[base]

    @staticmethod
    def _input(root: Path, recipe: Recipe, name: str) -> str | None:
        for sources, dest in recipe.copies:
            if dest.startswith(BUILD_INPUTS) and name in sources:
                return name
        return None

    def _code_layer(self, root: Path, recipe: Recipe) -> Layer:
        entries: list[Entry] = []
        for sources, dest in recipe.copies:
            if dest.startswith(BUILD_INPUTS):
                continue
            into_dir = dest.endswith("/") or len(sources) > 1
            for source in sources:
                path = root / source
                if not path.exists():
                    raise GraphpackError(f"COPY {source}: {path} does not exist")
                if path.is_dir():
                    for file in sorted(p for p in path.rglob("*") if p.is_file()):
                        target = posixpath.join(dest, file.relative_to(path).as_posix())
                        entries.append(self._file(file, target))
                else:
                    target = posixpath.join(dest, path.name) if into_dir else dest
                    entries.append(self._file(path, target))
        if recipe.workdir:
            entries.append(Entry(recipe.workdir.lstrip("/"), "dir", 0o755))
        import io

        buffer = io.BytesIO()
        blob = write_layer(entries, buffer)
        return Layer(blob.digest, blob.size, blob.diff_id, data=buffer.getvalue(), comment="code and spec")

    @staticmethod
    def _file(path: Path, target: str) -> Entry:
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        return Entry(target.lstrip("/"), "file", mode, data=path.read_bytes())

    @staticmethod
    def _configure(image: Image, recipe: Recipe) -> Image:
        container = image.container_config
        env = dict(item.split("=", 1) for item in container.get("Env") or [])
        env.update(dict(recipe.env))
        changes: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in env.items()]}
        if recipe.user:
            changes["User"] = recipe.user
        if recipe.workdir:
            changes["WorkingDir"] = recipe.workdir
        if recipe.exposed:
            changes["ExposedPorts"] = {**(container.get("ExposedPorts") or {}), **{p: {} for p in recipe.exposed}}
        if recipe.healthcheck is not None:
            changes["Healthcheck"] = recipe.healthcheck
        if recipe.entrypoint is not None:
            changes["Entrypoint"] = recipe.entrypoint
        if recipe.cmd is not None:
            changes["Cmd"] = recipe.cmd
        if recipe.labels:
            changes["Labels"] = {**(container.get("Labels") or {}), **recipe.labels}
        return with_container_config(image, **changes)


__all__ = ["OCIBuilder"]
