"""The generated entry module, run from its build context in a fresh interpreter: the copied
runtime only (jinja2, click, docker, boto3, the packager... cannot be imported), nuclio-sdk's
real Context/Event, and Response.from_entrypoint_output on the way back."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import run_build, write_project

HARNESS = Path(__file__).resolve().parent.parent / "handlers"

DRIVER = r'''
import importlib.abc, json, os, sys

BLOCKED = ("jinja2", "click", "docker", "boto3", "httpx", "graphviz", "nuclio", "nbformat", "yaml_include")


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED or name.startswith(("graphpack.packager", "graphpack.templates",
                                                              "graphpack.cli")):
            raise ImportError("blocked at serving time: " + name)
        return None


sys.meta_path.insert(0, Block())
build_dir, harness, requests = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path[:] = [build_dir] + [p for p in sys.path if p not in ("", ".", os.getcwd())] + [harness]
import graphpack
import graphpack_entry
import nuclio_harness as h

assert graphpack.__file__.startswith(build_dir), graphpack.__file__
results = []
for kind, event in requests:
    context, _ = h.make_context(kind, kind)
    graphpack_entry.init_context(context)
    output = graphpack_entry.handler(context, h.decode_event(h.encode_event(kind=kind, **{
        k: (v.encode() if k == "body" else v) for k, v in event.items()})))
    results.append(h.respond(output))
print(json.dumps(results))
'''


def run_entry(build_dir: Path, requests: list, env: dict | None = None) -> list[dict]:
    proc = subprocess.run([sys.executable, "-W", "error", "-c", DRIVER, str(build_dir), str(HARNESS),
                           json.dumps(requests)], capture_output=True, text=True, cwd=build_dir.parent,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


SEED = '''
# graphpack: start
class Echo:
    def __init__(self, context, name=None, **kw):
        self.context = context
        self.name = name
        self.kw = kw

    def do(self, x):
        return {"step": self.name, "kw": self.kw, "x": x, "threshold": self.context.get_param("threshold")}
# graphpack: end

fn = project.set_function("echo_function", kind="serving")
graph = fn.set_topology("flow", engine=ENGINE)
graph.to(class_name="Echo", name="pre-process", some_arg="abc").respond()
fn.spec.parameters = {"threshold": 0.4}
fn.add_trigger("nightly", graphpack.CronTrigger(schedule="0 2 * * *", body={"op": "retrain"}))
'''


def test_seed_flow_http_and_cron(tmp_path):
    for engine in ("sync", "async"):
        source = write_project(tmp_path / f"src-{engine}", SEED, ENGINE=engine)
        out = tmp_path / f"out-{engine}"
        assert run_build("-f", str(source), "-o", str(out)).exit_code == 0
        results = run_entry(out / "echo_function", [
            ["http", {"body": '{"inputs": 123}', "content_type": "application/json"}],
            ["http", {"body": "{oops", "content_type": "application/json"}],
            ["cron", {"body": '{"op":"retrain"}', "path": "", "method": "",
                      "headers": {"Content-Type": "application/json"}, "timestamp": 0}],
        ])
        ok, bad, cron = results
        assert ok["status_code"] == 200 and ok["content_type"] == "application/json"
        answer = json.loads(ok["body"])
        assert answer["kw"]["some_arg"] == "abc"
        assert (answer["step"], answer["x"], answer["threshold"]) == ("pre-process", {"inputs": 123}, 0.4)
        assert bad["status_code"] == 400
        assert json.loads(cron["body"])["x"] == {"op": "retrain"}


ROUTER = '''
fn = project.set_function("models.py", name="serving")
fn.set_topology("router")
fn.add_model("m1", class_name="Doubler", model_path="/models/m1")
fn.add_model("m2", class_name="Doubler", model_path="/models/m2", factor=3)
'''

MODELS = '''
from graphpack.serving import V2ModelServer


class Doubler(V2ModelServer):
    def load(self):
        self.model = self.get_param("factor", 2)

    def predict(self, request):
        return [x * self.model for x in request["inputs"]]
'''


def test_router_graph(tmp_path):
    source = write_project(tmp_path / "src", ROUTER, files={"models.py": MODELS})
    out = tmp_path / "out"
    assert run_build("-f", str(source), "-o", str(out)).exit_code == 0
    results = run_entry(out / "serving", [
        ["http", {"body": '{"inputs": [1, 2]}', "content_type": "application/json", "path": "/v2/models/m1/infer"}],
        ["http", {"body": '{"inputs": [1, 2]}', "content_type": "application/json", "path": "/v2/models/m2/infer"}],
        ["http", {"body": '{"inputs": [1]}', "content_type": "application/json", "path": "/v2/models/zz/infer"}],
    ])
    assert [r["status_code"] for r in results] == [200, 200, 400]
    assert json.loads(results[0]["body"])["outputs"] == [2, 4]
    assert json.loads(results[1]["body"])["outputs"] == [3, 6]
