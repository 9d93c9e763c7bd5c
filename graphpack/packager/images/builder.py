"""The ImageBuilder interface, the image reference it returns, a fixed fake, and the one
contract suite every builder passes (``check_image_builder``)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

Progress = Callable[[str], None]
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """A built image: ``name`` (host/repo:tag as asked) and its manifest ``digest``
    (for an image that was not pushed: the image id Docker reports)."""

    name: str
    digest: str

    @property
    def pinned(self) -> str:
        """``host/repo@sha256:...``: what to pull or run to get exactly this image."""
        return self.name.rsplit(":", 1)[0] + "@" + self.digest if ":" in self.name.rsplit("/", 1)[-1] \
            else f"{self.name}@{self.digest}"


class ImageBuilder(ABC):
    """Turns a build context directory (a Dockerfile and its files) into an image named ``tag``."""

    name = ""

    @abstractmethod
    def build(self, context: str | Path, tag: str) -> ImageRef:
        """Build (and, when configured, push) the image of ``context`` as ``tag``."""


class FixedBuilder(ImageBuilder):
    """A fake that builds nothing: digests are derived from the context's files (for tests
    of code that drives a builder, e.g. deploy planning). ``builds`` records the calls."""

    name = "fixed"

    def __init__(self) -> None:
        self.builds: list[tuple[str, str]] = []

    def build(self, context: str | Path, tag: str) -> ImageRef:
        root = Path(context)
        sha = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            sha.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        self.builds.append((str(root), tag))
        return ImageRef(tag, "sha256:" + sha.hexdigest())


def layer_files(blob: bytes) -> tuple[str, dict[str, tarfile.TarInfo], bytes]:
    """(diff_id, members by path, the uncompressed tar) of a gzipped layer blob."""
    raw = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}
    return "sha256:" + hashlib.sha256(raw).hexdigest(), members, raw


def check_image_builder(builder: ImageBuilder, context: str | Path, tag: str, registry: Any,
                        secrets: Iterable[str] = (), function_dir: str = "/opt/graphpack/function") -> ImageRef:
    """The contract every builder passes, checked through the registry it pushed to:
    a digest; the same digest again for an unchanged context; a manifest and config the
    registry serves under that digest; layers whose diff_ids match; a non-root user, a
    healthcheck, ``python3 -m graphpack.serve`` as the command, the function's files in ``function_dir``,
    graphpack's runtime without its build side (packager, CLI); and no ``secrets`` value in any layer."""
    from .registry import Reference

    ref = builder.build(context, tag)
    assert ref.name == tag, (ref.name, tag)
    assert DIGEST.match(ref.digest), ref.digest
    again = builder.build(context, tag)
    assert again.digest == ref.digest, f"unchanged context, new digest: {ref.digest} then {again.digest}"

    where = Reference.parse(tag)
    manifest_bytes, _ = registry.get_manifest(where.repo, where.tag)
    assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == ref.digest, "registry serves another manifest"
    manifest = json.loads(manifest_bytes)
    config = json.loads(registry.get_blob(where.repo, manifest["config"]["digest"]))
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    diff_ids = config["rootfs"]["diff_ids"]
    assert len(diff_ids) == len(manifest["layers"]) >= 2, "expected base layers plus the function's"
    container = config["config"]
    user = container.get("User", "")
    assert user and user.split(":")[0] not in ("0", "root"), f"image runs as {user!r}"
    assert container.get("Healthcheck", {}).get("Test"), "no HEALTHCHECK"
    command = (container.get("Entrypoint") or []) + (container.get("Cmd") or [])
    assert command[:3] == ["python3", "-m", "graphpack.serve"], command
    assert container.get("WorkingDir") == function_dir
    env = dict(item.split("=", 1) for item in container.get("Env", []))
    assert env.get("GRAPHPACK_SPEC_FILE", "").startswith(function_dir), env

    files: set[str] = set()
    hits: list[str] = []
    needles = [s.encode() for s in secrets if s]
    for descriptor, diff_id in zip(manifest["layers"], diff_ids):
        blob = registry.get_blob(where.repo, descriptor["digest"])
        actual, members, raw = layer_files(blob)
        assert actual == diff_id, f"layer {descriptor['digest']}: diff_id {actual} != config {diff_id}"
        files.update(members)
        hits += [f"{descriptor['digest'][:19]}: {n.decode()[:4]}..." for n in needles if n in raw]
    assert not hits, f"secrets found in layers: {hits}"
    prefix = function_dir.lstrip("/")
    for name in ("spec.json", "function.yaml", "graphpack_entry.py", "graphpack/runtime/processor.py"):
        assert f"{prefix}/{name}" in files, f"{prefix}/{name} missing from the image"
    build_side = [f for f in files if f.startswith(tuple(f"{prefix}/graphpack/{part}" for part in (
        "packager", "templates", "cli.py", "function.py", "project.py", "source.py", "graph/plot.py")))]
    assert not build_side, f"build-side files inside the image: {build_side[:5]}"
    return ref


__all__ = ["FixedBuilder", "ImageBuilder", "ImageRef", "check_image_builder", "layer_files"]
