"""Fixtures for running built functions under the real Nuclio processor.

``toolchain`` skips (naming the missing part and the exact error) only when the setup step
could not obtain the processor; ``shop`` is a project built once per session with
``graphpack build``: the seed router and flow graphs with a scikit-learn iris model, and a
``mirror`` flow for JSON, text and bytes bodies plus two cron triggers (JSON and text bodies).
"""
from __future__ import annotations

import os
import pickle
import runpy
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import toolchain as tc

CODE = '''
# graphpack: start
import json
import os
import pickle

from graphpack.errors import BadRequestError
from graphpack.serving import V2ModelServer


class ClassifierModel(V2ModelServer):
    """The seed's scikit-learn classifier."""

    def load(self):
        path, _ = self.get_model(".pkl")
        with open(path, "rb") as handle:
            self.model = pickle.load(handle)

    def predict(self, request):
        return self.model.predict(request["inputs"]).tolist()


class EchoModel(V2ModelServer):
    def predict(self, request):
        return request["inputs"]


class BrokenModel(V2ModelServer):
    def predict(self, request):
        raise ZeroDivisionError("bad math")


class Mirror:
    """Answers in kind: bytes reversed, text upper-cased, JSON wrapped; 'bad' is a 400, 'boom' a 500.

    Every event is appended to $MIRROR_LOG (JSON lines) with its trigger, method, path and body.
    """

    def __init__(self, context=None, name=None):
        self.context = context

    def do_event(self, event):
        body = event.body
        if isinstance(body, dict) and "respond" in body:  # a step answering with its own Response
            return self.context.Response(headers={"X-Mirror": "yes"}, body=body["respond"],
                                         content_type="text/csv", status_code=201)
        if isinstance(body, dict) and "aslist" in body:  # a bare list (Nuclio's wrapper: a batch)
            event.body = body["aslist"]
            return event
        if body in ("none", b"none"):  # nothing (Nuclio's wrapper: the text "None")
            event.body = None
            return event
        log = os.environ.get("MIRROR_LOG")
        if log:
            shown = body.decode("latin-1") if isinstance(body, bytes) else body
            with open(log, "a") as handle:
                handle.write(json.dumps({"trigger": getattr(event, "trigger", None), "method": event.method,
                                         "path": event.path, "type": type(body).__name__,
                                         "body": shown}) + "\\n")
        if body in ("bad", b"bad") or (isinstance(body, dict) and body.get("bad")):
            raise BadRequestError("bad input")
        if body in ("boom", b"boom") or (isinstance(body, dict) and body.get("boom")):
            raise ValueError("boom")
        if isinstance(body, bytes):
            event.body = body[::-1]
        elif isinstance(body, str):
            event.body = body.upper()
        else:
            event.body = {"mirror": body, "path": event.path, "method": event.method,
                          "fields": getattr(event, "fields", None) or {}}
        return event
# graphpack: end
'''

PROJECT = '''
import graphpack

project = graphpack.get_or_create_project("np", "./")

# the seed router topology: models behind the V2 protocol router
fn = project.set_function("serving.py", name="router", kind="serving")
fn.set_topology("router")
fn.add_model("iris", class_name="ClassifierModel", model_path=MODEL)
fn.add_model("echo", class_name="EchoModel", model_path="unused")
fn.add_model("broken", class_name="BrokenModel", model_path="unused")

# the seed flow: enrich, then a model router that responds
flow = project.set_function("serving.py", name="flow", kind="serving")
graph = flow.set_topology("flow", engine="async")
graph.to("storey.Extend", name="enrich", _fn='({"tag": "something"})')
router = graph.add_step(graphpack.serving.ModelRouter(), name="router", after="enrich")
router.add_route("m1", class_name="ClassifierModel", model_path=MODEL)
router.respond()

# bodies of every type, and a cron trigger
mirror = project.set_function("serving.py", name="mirror", kind="serving")
mirror.set_topology("flow", engine="sync").to(class_name="Mirror", name="mirror").respond()
mirror.add_trigger("tick", graphpack.CronTrigger(interval="1s", body={"op": "tick"}))
mirror.add_trigger("note", graphpack.CronTrigger(interval="1s", body="plain note"))

# an async flow with no responder: answers {"id": ...} at once and goes on in the background
fire = project.set_function("serving.py", name="fire", kind="serving")
fire.set_topology("flow", engine="async").to(class_name="Mirror", name="mirror")
'''


#: the mirror's cron triggers and the bodies they declare
CRON_BODIES = {"tick": {"op": "tick"}, "note": "plain note"}


@pytest.fixture(scope="session")
def toolchain() -> dict:
    """The processor, wrapper and Python recorded by the setup step (see toolchain.py)."""
    try:
        return tc.load()
    except tc.Unavailable as exc:
        pytest.skip(str(exc))


def build_project(directory: Path, code: str, project: str, env: dict | None = None, **consts: Any) -> Path:
    """Write ``serving.py`` and ``project.py`` into ``directory``, ``graphpack build`` it; the build dir."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "serving.py").write_text(textwrap.dedent(code))
    head = "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    (directory / "project.py").write_text(head + textwrap.dedent(project))
    out = directory / "build"
    proc = subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", str(out)],
                          cwd=directory, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


@dataclass
class Built:
    root: Path     # the project directory
    build: Path    # graphpack build output: one directory per function
    model: Path    # the pickled iris classifier

    def function(self, name: str) -> Path:
        return self.build / name


@pytest.fixture(scope="session")
def iris() -> Any:
    from sklearn.datasets import load_iris

    return load_iris()


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, iris: Any) -> Built:
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("nuclio-project")
    model = root / "iris.pkl"
    model.write_bytes(pickle.dumps(LogisticRegression(max_iter=1000).fit(iris["data"], iris["target"])))
    return Built(root, build_project(root, CODE, PROJECT, MODEL=str(model)), model)


def mock_server(built: Built, function: str) -> Any:
    """``function``'s mock server, from the same project script the build used."""
    cwd = os.getcwd()
    os.chdir(built.root)  # the project script resolves "./" against the working directory
    try:
        scope = runpy.run_path(str(built.root / "project.py"))
        return scope["project"].get_function(function).to_mock_server()
    finally:
        os.chdir(cwd)
