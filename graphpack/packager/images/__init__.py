"""Container images: the ImageBuilder interface and its two builders (Docker engine, daemonless
OCI), image values, publishers (registry push, docker load, OCI layout), the registry client
and graphpack's base image. Builders are chosen by name from one table."""
from __future__ import annotations

from typing import Any

from ...errors import GraphpackError
from .builder import FixedBuilder, ImageBuilder, ImageRef, check_image_builder
from .oci import Image, Layer
from .registry import Reference, Registry


def _oci(**options: Any) -> ImageBuilder:
    from .daemonless import OCIBuilder

    return OCIBuilder(**options)


def _docker(**options: Any) -> ImageBuilder:
    from .docker_engine import DockerBuilder

    return DockerBuilder(**options)


BUILDERS = {"oci": _oci, "docker": _docker, "fixed": lambda **options: FixedBuilder()}


def get_builder(name: str = "oci", **options: Any) -> ImageBuilder:
    """The image builder called ``name`` (an unknown name lists the known ones)."""
    if name not in BUILDERS:
        raise GraphpackError(f"unknown image builder {name!r} (known: {', '.join(sorted(BUILDERS))})")
    return BUILDERS[name](**options)


__all__ = ["BUILDERS", "FixedBuilder", "Image", "ImageBuilder", "ImageRef", "Layer", "Reference", "Registry",
           "check_image_builder", "get_builder"]
