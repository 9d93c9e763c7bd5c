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


def files_digest(files: dict[str, str]) -> str:
    """A short digest of a build context's files (relative path -> sha256 hex); wheels added for an
    offline image build are left out (requirements.txt already names them)."""
    kept = {k: v for k, v in files.items() if not k.startswith("wheels/")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def context_digest(context: Any) -> str:
    """A short digest of a function's build context in memory (same files, same digest)."""
    return files_digest(context.digests())


def image_name(registry: str | None, project: str, function: str, tag: str) -> str:
    """The one naming rule of the images graphpack builds: ``REGISTRY/PROJECT/FUNCTION:TAG``
    (``graphpack.local`` without a registry), the tag being the build context's digest."""
    repo = f"{project}/{function}".lower().replace("_", "-")
    return f"{(registry or '').rstrip('/') or 'graphpack.local'}/{repo}:{tag}"


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
    """The build contexts of the project's functions (or children), children before their root."""
    from . import project_contexts

    return project_contexts(project, functions, target, action="deploy", children_first=True)


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


TAG_NOTE = "Knative resolves an image tag to a digest when it creates the revision"


class Images:
    """Where each function's image comes from: a given reference (``--image F=REF``, a tag or a
    digest), else the image graphpack builds and pushes to ``registry`` (its tag is a digest of
    the build context). ``build``: render builds and pushes now; otherwise it stays offline."""

    def __init__(self, images: dict[str, str] | None = None, registry: str | None = None,
                 builder: Any = None, build: bool = True) -> None:
        self.images = dict(images or {})
        self.registry = (registry or "").rstrip("/")
        self._builder = builder
        self.build = build
        self.chosen: dict[str, dict] = {}   # function -> {"image", "build", "push"}: what render used
        self.resolved: dict[str, str] = {}  # function -> its given tag pinned to the digest verify found

    def check(self, contexts: list, target: str, strict: bool = True) -> list[str]:
        """Before anything changes: every ``--image`` names a function, and every function has an image
        or a registry to push one to (``strict``; otherwise the gaps come back as notes)."""
        known = {c.plan.function for c in contexts}
        for name in self.images:
            if name not in known:
                raise GraphpackError(f"--image {name}=...: no function {name!r} "
                                     f"(functions: {', '.join(sorted(known))})")
        notes = []
        missing = [c.plan.function for c in contexts if c.plan.function not in self.images]
        if missing and not self.registry:
            message = (f"no registry to push the images of {', '.join(missing)} to for target {target!r}: "
                       f"set --registry or $GRAPHPACK_REGISTRY, or give --image FUNCTION=REF")
            if strict:
                raise GraphpackError(message)
            notes.append(message)
        tags = sorted(name for name, ref in self.images.items() if name in known and not pinned(ref))
        if tags and target == "knative":
            notes.append(f"{TAG_NOTE} (images given by tag: {', '.join(tags)})")
        return notes

    def verify(self, contexts: list) -> None:
        """Before anything changes: each given image is in its registry (a missing one names itself);
        a tag is pinned to the digest the registry serves for it, so that what was checked is what
        runs."""
        from .images.registry import Reference, Registry

        wanted = {c.plan.function for c in contexts}
        for function, text in sorted(self.images.items()):
            if function not in wanted:
                continue
            ref = Reference.parse(text)
            with Registry(ref.host, timeout=15) as registry:
                try:
                    manifest, _ = registry.get_manifest(ref.repo, ref.ref)
                except GraphpackError as exc:
                    raise GraphpackError(f"image {text!r} of function {function!r} is not usable: {exc}") from None
            if not pinned(text):
                self.resolved[function] = f"{ref.host}/{ref.repo}@sha256:{hashlib.sha256(manifest).hexdigest()}"

    def tag(self, context: Any) -> str:
        return image_name(self.registry, context.plan.project, context.plan.function, context_digest(context))

    def planned(self, contexts: list) -> dict[str, dict]:
        """function -> what a deploy will run: the given image, or the tag it builds and pushes."""
        out = {}
        for context in contexts:
            function = context.plan.function
            if function in self.images:
                out[function] = {"image": self.images[function], "build": False, "push": ""}
            else:
                out[function] = {"image": self.tag(context), "build": True, "push": self.registry}
        return out

    def builder(self) -> Any:
        if self._builder is None or isinstance(self._builder, str):
            from .images import get_builder

            self._builder = get_builder(self._builder or "oci")
        return self._builder

    def resolve(self, contexts: list, build_dir: str | Path, progress: Progress | None = None) -> dict[str, str]:
        """function -> image reference; builds (writing the contexts under ``build_dir``) what is missing."""
        progress = progress or _quiet
        out = {c.plan.function: self.resolved.get(c.plan.function, self.images[c.plan.function])
               for c in contexts if c.plan.function in self.images}
        for function, ref in sorted(out.items()):
            if ref != self.images[function]:
                progress(f"image {self.images[function]} of {function} is {ref}")
        missing = [c for c in contexts if c.plan.function not in out]
        if missing:
            from . import write_contexts

            build_dir = Path(build_dir)
            if getattr(self.builder(), "name", "") != "fixed":
                add_wheels(missing, progress)
            write_contexts(missing, build_dir)
            for context in missing:
                tag = self.tag(context)
                progress(f"building image {tag}" + (f" and pushing it to {self.registry}" if self.registry else ""))
                ref = self.builder().build(build_dir / context.plan.function, tag)
                progress(f"built {ref.pinned}")
                out[context.plan.function] = ref.pinned
        return out


def render(project: Any, target: str, output: str | Path, functions: list[str] | None = None,
           images: Images | None = None, namespace: str | None = None,
           progress: Progress | None = None, build_dir: str | Path | None = None,
           notes: list[str] | None = None) -> list[Path]:
    """Write the target's manifests for the project's functions under ``output``; returns the files.

    knative: ``<output>/<service>.yaml`` (the Service, then its PingSources); nuclio:
    ``<output>/<function name>.yaml`` (a function config with ``spec.image``, ready for the dashboard).
    Images: see :class:`Images` (offline unless ``images.build``); what the user should know about
    them (tags, images still to build) is appended to ``notes``.
    """
    from .context import dump_yaml

    if target not in RENDER_TARGETS:
        raise GraphpackError(f"cannot render target {target!r} (known: {', '.join(RENDER_TARGETS)})")
    contexts = render_contexts(project, target, functions)
    images = images or Images(build=False)
    notes = notes if notes is not None else []
    output = Path(output)
    build_dir = Path(build_dir) if build_dir else Path(project.context or ".") / ".graphpack" / f"build-{target}"
    if target == "knative":
        from .deploy.knative import DEFAULT_NAMESPACE, manifests

        space = namespace or DEFAULT_NAMESPACE
        for context in contexts:  # a trigger Knative cannot express fails before any image is built
            manifests(context, "placeholder.invalid/x@sha256:" + "0" * 64, space)
    refs = _images_for(images, contexts, target, build_dir, progress or _quiet, notes)
    if target == "knative":
        docs = {c.name: manifests(c, refs[c.plan.function], space) for c in contexts}
    else:
        from .deploy.nuclio import deploy_config

        docs = {c.name: [deploy_config(c, refs[c.plan.function], namespace)] for c in contexts}
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, objects in docs.items():
        path = output / f"{name}.yaml"
        path.write_text("---\n".join(dump_yaml(obj) for obj in objects))
        written.append(path)
    return written


def offline_plan(target: str, project: Any, contexts: list, images: Images, build_dir: str | Path,
                 objects: Callable[[Any], list[str]], remote: str) -> Any:
    """A cluster target's ``deploy --dry-run``: what would be built, pushed and applied, read from the
    project alone (``remote``, e.g. "the Nuclio dashboard at URL", is not asked what exists)."""
    from .deploy.base import Plan, Step

    notes = images.check(contexts, target, strict=False)
    planned = images.planned(contexts)
    steps = []
    for context in contexts:
        function = context.plan.function
        details = {"name": context.name, "root": context.plan.root, "digest": context_digest(context),
                   **planned[function], "objects": objects(context)}
        steps.append(Step("apply", function, "create or update", details))
    notes.append(f"dry run: {remote} was not contacted, nothing was built, pushed or applied")
    return Plan(target, project.name, tuple(steps), str(build_dir), tuple(contexts), tuple(notes))


def _images_for(images: Images, contexts: list, target: str, build_dir: Path, progress: Progress,
                notes: list[str]) -> dict[str, str]:
    """The image of each function: built and pushed now (``images.build``) or planned offline."""
    notes += images.check(contexts, target, strict=images.build)
    planned = images.planned(contexts)
    if images.build:
        refs = images.resolve(contexts, build_dir, progress)
        for function, ref in refs.items():
            planned[function].update(image=ref, build=False)
    else:
        refs = {function: item["image"] for function, item in planned.items()}
        todo = sorted(function for function, item in planned.items() if item["build"])
        if todo:
            notes.append(f"images of {', '.join(todo)} are not built yet: `graphpack deploy` (or `render --build`) "
                         "builds and pushes them under the tags written here")
            if target == "knative":
                notes.append(TAG_NOTE)
    notes[:] = list(dict.fromkeys(notes))
    images.chosen = planned
    return refs


__all__ = ["RENDER_TARGETS", "Images", "add_wheels", "context_digest", "files_digest", "image_name", "offline_plan", "parse_images", "render",
           "render_contexts"]
