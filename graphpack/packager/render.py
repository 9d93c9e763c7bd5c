"""Manifests without applying them (``graphpack render --target nuclio|knative -o DIR``), and the
image step shared by the cluster targets: a function's image is either given (``--image F=REF``)
or built from its build context and pushed to ``--registry`` by an ImageBuilder."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import GraphpackError

Progress = Callable[[str], None]
RENDER_TARGETS = ("knative", "nuclio")


def _quiet(message: str) -> None:
    """The default progress sink."""


def context_digest(context: Any) -> str:
    """A short digest of a function's build context (same files, same digest); wheels added for an
    offline image build are left out (requirements.txt already names them)."""
    files = {k: v for k, v in context.digests().items() if not k.startswith("wheels/")}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def add_wheels(contexts: list, progress: Progress) -> None:
    """Put the wheels of each context's requirements into it (the Dockerfile installs offline)."""
    from .images.wheels import download_wheels, requirement_lines

    for context in contexts:
        if any(path.startswith("wheels/") for path in context.files):
            continue
        lines = requirement_lines(context.files["requirements.txt"][0].decode())
        progress(f"wheels for {context.plan.function}: {', '.join(lines) or 'none'}")
        for wheel in sorted(download_wheels(lines).glob("*.whl")):
            context.files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), False)


def render_contexts(project: Any, target: str, functions: list[str] | None = None) -> list:
    """The build contexts of the project's functions, children before their root."""
    from . import plan_and_render

    names = list(functions) if functions else list(project.functions)
    if not names:
        raise GraphpackError(f"project {project.name!r} has no functions to deploy")
    contexts = []
    for name in names:
        contexts += plan_and_render(project.get_function(name), project.name, target)
    return sorted(contexts, key=lambda c: (c.plan.root, c.plan.is_root))


def parse_images(pairs: Iterable[str]) -> dict[str, str]:
    """``FUNCTION=REF`` pairs (``--image``) as a dict."""
    out = {}
    for pair in pairs:
        name, sep, ref = pair.partition("=")
        if not sep or not name.strip() or not ref.strip():
            raise GraphpackError(f"--image {pair!r} is not FUNCTION=IMAGE")
        out[name.strip()] = ref.strip()
    return out


def pinned(ref: str) -> bool:
    return "@sha256:" in ref


class Images:
    """Where each function's image comes from: given references, else build and push."""

    def __init__(self, images: dict[str, str] | None = None, registry: str | None = None,
                 builder: Any = None, require_digest: bool = False) -> None:
        self.images = dict(images or {})
        self.registry = (registry or "").rstrip("/")
        self._builder = builder
        self.require_digest = require_digest

    def check(self, contexts: list, target: str) -> None:
        """Before anything changes: every function has an image or a registry to push one to."""
        known = {c.plan.function for c in contexts}
        for name in self.images:
            if name not in known:
                raise GraphpackError(f"--image {name}=...: no function {name!r} "
                                     f"(functions: {', '.join(sorted(known))})")
        for context in contexts:
            ref = self.images.get(context.plan.function)
            if ref is None and not self.registry:
                raise GraphpackError(
                    f"function {context.plan.function!r} has no image for target {target!r}: set a registry to "
                    f"push built images to (--registry or $GRAPHPACK_REGISTRY) or give --image "
                    f"{context.plan.function}=REF")
            if ref is not None and self.require_digest and not pinned(ref):
                raise GraphpackError(f"image {ref!r} of function {context.plan.function!r} is not pinned by "
                                     f"digest (use NAME@sha256:...): target {target!r} deploys images by digest")

    def verify(self, contexts: list) -> None:
        """Before anything changes: each given image is in its registry (a missing one names itself)."""
        from .images.registry import Reference, Registry

        wanted = {c.plan.function for c in contexts}
        for function, text in sorted(self.images.items()):
            if function not in wanted:
                continue
            ref = Reference.parse(text)
            with Registry(ref.host, timeout=15) as registry:
                try:
                    registry.get_manifest(ref.repo, ref.ref)
                except GraphpackError as exc:
                    raise GraphpackError(f"image {text!r} of function {function!r} is not usable: {exc}") from None

    def tag(self, context: Any) -> str:
        return f"{self.registry}/{context.name}:{context_digest(context)}"

    def builder(self) -> Any:
        if self._builder is None or isinstance(self._builder, str):
            from .images import get_builder

            self._builder = get_builder(self._builder or "oci")
        return self._builder

    def resolve(self, contexts: list, build_dir: str | Path, progress: Progress | None = None) -> dict[str, str]:
        """function -> image reference; builds (writing the contexts under ``build_dir``) what is missing."""
        progress = progress or _quiet
        out = {c.plan.function: self.images[c.plan.function] for c in contexts if c.plan.function in self.images}
        missing = [c for c in contexts if c.plan.function not in out]
        if missing:
            from . import write_contexts

            build_dir = Path(build_dir)
            if getattr(self.builder(), "name", "") != "fixed":
                add_wheels(missing, progress)
            write_contexts(missing, build_dir)
            for context in missing:
                tag = self.tag(context)
                progress(f"building image {tag}")
                ref = self.builder().build(build_dir / context.plan.function, tag)
                out[context.plan.function] = ref.pinned
        return out


def render(project: Any, target: str, output: str | Path, functions: list[str] | None = None,
           images: Images | None = None, namespace: str | None = None,
           progress: Progress | None = None, build_dir: str | Path | None = None) -> list[Path]:
    """Write the target's manifests for the project's functions under ``output``; returns the files.

    knative: ``<output>/<service>.yaml`` (the Service, then its PingSources); nuclio:
    ``<output>/<function name>.yaml`` (a function config with ``spec.image``, ready for the dashboard).
    """
    from .context import dump_yaml

    if target not in RENDER_TARGETS:
        raise GraphpackError(f"cannot render target {target!r} (known: {', '.join(RENDER_TARGETS)})")
    contexts = render_contexts(project, target, functions)
    images = images or Images()
    output = Path(output)
    build_dir = Path(build_dir) if build_dir else Path(project.context or ".") / ".graphpack" / f"build-{target}"
    if target == "knative":
        from .deploy.knative import DEFAULT_NAMESPACE, manifests

        namespace = namespace or DEFAULT_NAMESPACE
        for context in contexts:  # a trigger Knative cannot express fails before any image is built
            manifests(context, "placeholder.invalid/x@sha256:" + "0" * 64, namespace)
        images.require_digest = True
        images.check(contexts, target)
        refs = images.resolve(contexts, build_dir, progress)
        docs = {c.name: manifests(c, refs[c.plan.function], namespace) for c in contexts}
    else:
        from .deploy.nuclio import deploy_config

        images.check(contexts, target)
        refs = images.resolve(contexts, build_dir, progress)
        docs = {c.name: [deploy_config(c, refs[c.plan.function], namespace)] for c in contexts}
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objects in docs.items():
        path = output / f"{name}.yaml"
        path.write_text("---\n".join(dump_yaml(obj) for obj in objects))
        written.append(path)
    return written


__all__ = ["RENDER_TARGETS", "Images", "add_wheels", "context_digest", "parse_images", "render", "render_contexts"]
