"""Project fixtures for build tests: code files and project scripts written into tmp dirs."""
from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from graphpack.cli import main

SERVING = '''
class Echo:
    def __init__(self, context=None, name=None, **kw):
        self.name = name
        self.kw = kw

    def do(self, x):
        return x
'''

ENRICH = '''
class Enrich:
    def do(self, x):
        x["enriched"] = True
        return x


class Score:
    def do(self, x):
        x["score"] = 0.9
        return x
'''

HEADER = '''
import graphpack

project = graphpack.get_or_create_project("shop", "./")
'''

DESIGN = '''
fn = project.set_function("serving.py", name="recommender", kind="serving", image="python:3.11-slim",
                          requirements=["scikit-learn"])
graph = fn.set_topology("flow", engine="async")
graph.to(class_name="Echo", name="pre-process", some_arg="abc") \\
     .to(">>", "q1", path=QUEUE, shards=SHARDS) \\
     .to(class_name="Enrich", name="enrich", function="enricher") \\
     .to(class_name="Score", name="score", function="enricher").respond()
fn.add_child_function("enricher", "./enrich.py", requirements=["pandas"])
fn.spec.parameters = {"threshold": 0.4}
fn.spec.error_stream = "s3://bucket/queues/errors"
fn.add_trigger("nightly", graphpack.CronTrigger(schedule="0 2 * * *", body={"op": "retrain"}))
'''


def write_project(directory: Path, body: str, files: dict[str, str] | None = None, **consts: Any) -> Path:
    """``directory/project.py`` = imports + ``body`` (with ``NAME = value`` constants first)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)  # project scripts use get_or_create_project(name, "./"); tests restore cwd
    for name, text in {"serving.py": SERVING, "enrich.py": ENRICH, **(files or {})}.items():
        (directory / name).write_text(textwrap.dedent(text))
    head = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    path = directory / "project.py"
    path.write_text(head + HEADER + textwrap.dedent(body))
    return path


@pytest.fixture(autouse=True)
def _keep_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(os.getcwd())


@pytest.fixture
def design_project(tmp_path: Path) -> Callable[..., Path]:
    def make(queue: str = "s3://bucket/queues/q1", shards: int | None = None, extra: str = "") -> Path:
        return write_project(tmp_path / "src", DESIGN + extra, QUEUE=queue, SHARDS=shards)

    return make


def run_build(*args: str) -> Any:
    """``graphpack build ARGS`` in-process; returns click's Result (stdout/stderr apart)."""
    return CliRunner().invoke(main, ["build", *args], catch_exceptions=False)


def read_tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """relative path -> (bytes, mode) of every file under ``root``."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(root.rglob("*")) if p.is_file()}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def docker_engine():
    """A docker-py client of the running engine (scripts/test.sh starts dockerd); skips naming why not."""
    import docker

    client = None
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        if client is not None:
            client.close()  # its socket would otherwise surface as a ResourceWarning in a later test
        pytest.skip(f"the Docker engine is not reachable ({exc}); scripts/test.sh starts dockerd")
    yield client
    client.close()
