"""Deploy targets, chosen by name from one table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import GraphpackError
from .base import Deployer, InvokeResult, Plan, Step, check_deployer


def _local(project_dir: str | Path, **options: Any) -> Deployer:
    from .local import LocalDeployer

    return LocalDeployer(project_dir, **options)


def _docker(project_dir: str | Path, **options: Any) -> Deployer:
    from .docker import DockerDeployer

    return DockerDeployer(project_dir, **options)


def _knative(project_dir: str | Path, **options: Any) -> Deployer:
    from .knative import KnativeDeployer

    return KnativeDeployer(project_dir, **options)


def _nuclio(project_dir: str | Path, **options: Any) -> Deployer:
    from .nuclio import NuclioDeployer

    return NuclioDeployer(project_dir, **options)


TARGETS = {"local": _local, "docker": _docker, "knative": _knative, "nuclio": _nuclio}


def get_deployer(target: str = "local", project_dir: str | Path = ".", **options: Any) -> Deployer:
    """The deployer for ``target`` (an unknown target names the known ones)."""
    if target not in TARGETS:
        raise GraphpackError(f"unknown deploy target {target!r} (known: {', '.join(sorted(TARGETS))})")
    return TARGETS[target](project_dir, **options)


__all__ = ["Deployer", "InvokeResult", "Plan", "Step", "TARGETS", "check_deployer", "get_deployer"]
