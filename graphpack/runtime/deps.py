"""Optional third-party packages the runtime imports only when a feature uses them.

The packager derives a function's requirements from its graph (packager/requirements.py), so a
missing package at run time means a hand-edited build or a function run outside its image; it
is then one clear error naming the package and the feature, logged once, and the process
reports itself failed (the processor's health check answers 503) instead of retrying forever.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType

from ..errors import GraphpackError


class MissingDependency(GraphpackError):
    """A feature the function uses needs a package that is not installed."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(f"{feature} needs the Python package {package!r}, which is not installed "
                         f"(add {package!r} to the function's requirements)")
        self.package = package
        self.feature = feature


_lock = threading.Lock()
_failures: dict[str, str] = {}  # message -> package, in the order they happened


def require(module: str, package: str, feature: str) -> ModuleType:
    """``import module`` (e.g. "botocore.exceptions" from package "boto3"); when it is missing,
    log one line, mark this process failed (see :func:`failures`) and raise MissingDependency."""
    try:
        return importlib.import_module(module)
    except ImportError:
        error = MissingDependency(package, feature)
    with _lock:
        first = str(error) not in _failures
        _failures.setdefault(str(error), package)
    if first:
        from .logger import logger

        logger.error(f"graphpack: {error}")
    raise error


def missing_in(exc: BaseException | None) -> MissingDependency | None:
    """The MissingDependency behind ``exc`` (itself, or what it was raised from), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MissingDependency):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def failures() -> list[str]:
    """Why this process cannot work (missing packages), for the health check; empty when fine."""
    with _lock:
        return list(_failures)


__all__ = ["MissingDependency", "failures", "missing_in", "require"]
