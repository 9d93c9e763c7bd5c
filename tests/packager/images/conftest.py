"""Fixtures for image tests: real docker-registry instances on loopback (with and without
basic auth), graphpack's base image and wheels (cached under $GRAPHPACK_CACHE), function
build contexts written by the packager, and the Docker engine started by scripts/test.sh."""
from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from pathlib import Path
from typing import Callable

import pytest

import graphpack
from graphpack.packager import build_project
from graphpack.packager.images.baseimage import build_base
from graphpack.packager.images.testing import registry_available, run_registry
from graphpack.packager.images.wheels import download_wheels
from graphpack.packager.requirements import processor_requirements

SECRET = "s3cr3t-" + uuid.uuid4().hex   # set in the environment at build time; must reach no layer

CODE = '''
class Echo:
    def __init__(self, context=None, name=None, tag="v1"):
        self.context = context
        self.tag = tag

    def do(self, body):
        token = self.context.get_secret("API_TOKEN") if self.context else None
        return {"echo": body, "tag": self.tag, "token_len": len(token or "")}
'''


@pytest.fixture(scope="session")
def registry():
    if not registry_available():
        pytest.skip("docker-registry is not installed (Debian docker-registry; scripts/test.sh installs it)")
    with run_registry() as running:
        yield running


@pytest.fixture(scope="session")
def auth_registry():
    if not registry_available() or not shutil.which("htpasswd"):
        pytest.skip("docker-registry or htpasswd (apache2-utils) missing; scripts/test.sh installs them")
    with run_registry("graphpack", "pw-" + uuid.uuid4().hex[:8]) as running:
        yield running


@pytest.fixture(scope="session")
def base_image():
    if not shutil.which("dpkg-deb") or not shutil.which("apt-get"):
        pytest.skip("the base image is built from Debian packages (dpkg-deb/apt-get missing)")
    return build_base()


@pytest.fixture(scope="session")
def wheels() -> Path:
    return download_wheels(processor_requirements())


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("API_TOKEN", SECRET)
    return SECRET


def write_function(directory: Path, wheels: Path, code: str = CODE, tag: str = "v1", name: str = "echo",
                   extra: Callable | None = None) -> Path:
    """A project in ``directory`` with one function; returns its build context directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(textwrap.dedent(code))
    project = graphpack.get_or_create_project("imgs", str(directory))
    fn = project.set_function(str(directory / "serving.py"), name=name)
    fn.with_secrets("env", ["API_TOKEN"])
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Echo", name="echo", tag=tag).respond()
    if extra:
        extra(fn)
    cwd = os.getcwd()
    try:
        os.chdir(directory)
        build_project(project, directory / "build", target="docker", wheels=str(wheels))
    finally:
        os.chdir(cwd)
    return directory / "build" / name


@pytest.fixture
def make_context(tmp_path, wheels) -> Callable[..., Path]:
    def make(sub: str = "src", **kwargs) -> Path:
        return write_function(tmp_path / sub, wheels, **kwargs)

    return make


def repo(prefix: str = "t") -> str:
    """A fresh repository name (blob presence is per repository)."""
    return f"{prefix}/{uuid.uuid4().hex[:10]}"
