"""What ``graphpack build --image`` and ``graphpack base-image`` do, as plain functions."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ...errors import GraphpackError
from ..render import image_name
from . import baseimage, get_builder
from .registry import Registry
from .wheels import download_wheels, requirement_lines

Progress = Callable[[str], None]


def default_registry(registry: str | None) -> str | None:
    return registry or os.environ.get("GRAPHPACK_REGISTRY") or None


def add_wheels(context: Path, progress: Progress) -> None:
    """Put the wheels the context's requirements.txt needs (downloaded on the host) in wheels/."""
    lines = requirement_lines((context / "requirements.txt").read_text())
    wheels = context / "wheels"
    if not lines or any(wheels.glob("*.whl")):
        return
    source = download_wheels(lines)
    progress(f"wheels for {context.name}: {', '.join(lines)}")
    wheels.mkdir(exist_ok=True)
    for wheel in sorted(source.glob("*.whl")):
        shutil.copyfile(wheel, wheels / wheel.name)


def context_tag(context: Path) -> str:
    """A tag derived from the context's files: the digest deploy and render use for the same context."""
    from ..render import files_digest

    return files_digest({path.relative_to(context).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                         for path in sorted(p for p in context.rglob("*") if p.is_file())})


def build_images(summary: dict, project: str, builder: str = "oci", registry: str | None = None,
                 push: bool = True, tag: str | None = None, progress: Progress | None = None) -> list[dict]:
    """Build (and push) an image for every function in a ``build_project`` summary."""
    say = progress or (lambda message: None)
    registry = default_registry(registry)
    if push and not registry:
        raise GraphpackError("pushing needs a registry: --registry HOST[:PORT] or $GRAPHPACK_REGISTRY (or --no-push)")
    client = Registry(registry) if registry else None
    options: dict = {"registry": client, "push": push, "progress": say}
    if builder == "oci" and not push:
        options["load"] = False
    images = []
    try:
        image_builder = get_builder(builder, **options)
        for item in summary["functions"]:
            context = Path(item["path"])
            add_wheels(context, say)
            name = image_name(registry, project, item["function"], tag or context_tag(context))
            started = time.perf_counter()
            ref = image_builder.build(context, name)
            seconds = time.perf_counter() - started
            say(f"{item['function']}: {ref.name} {ref.digest} ({seconds:.2f}s)")
            images.append({"function": item["function"], "image": ref.name, "digest": ref.digest,
                           "pinned": ref.pinned, "pushed": push, "seconds": round(seconds, 3)})
    finally:
        if client is not None:
            client.close()
    return images


def base_image(registry: str | None = None, push: bool = True, load: bool = False, force: bool = False,
               progress: Progress | None = None) -> dict:
    """Build (or read from the cache) graphpack's base image; push it and/or load it into Docker."""
    say = progress or (lambda message: None)
    image = baseimage.build_base(say, force=force)
    name = f"{baseimage.BASE_REPO}:{baseimage.base_tag(image)}"
    out: dict[str, Any] = {"digest": image.digest, "layers": [layer.digest for layer in image.layers],
                           "size": sum(layer.size for layer in image.layers), "cache": str(baseimage.cache_dir())}
    registry = default_registry(registry)
    if push and registry:
        from .publish import push as push_image

        with Registry(registry) as client:
            out["pushed"] = f"{registry}/{name}@{push_image(image, f'{registry}/{name}', client)}"
        say(f"pushed {out['pushed']}")
    if load:
        from .docker_engine import ensure_base_in_docker, docker_client

        out["docker"] = ensure_base_in_docker(docker_client(), image, say)
    out["name"] = name
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


__all__ = ["add_wheels", "base_image", "build_images", "context_tag", "default_registry"]
