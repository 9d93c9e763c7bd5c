"""The user's spec: MLRun serving-graph doc snippets run with `mlrun` replaced by `graphpack`.

The snippets are written out as scripts and run in a fresh interpreter exactly as a user
would run them; only `mlrun` -> `graphpack` differs from the docs (../shared/seeds).
"""
import subprocess
import sys
import textwrap

ECHO = '''
import graphpack
# graphpack: start
# echo class, custom class example
class Echo:
    def __init__(self, context, name=None, **kw):
        self.context = context
        self.name = name
        self.kw = kw

    def do(self, x):
        print("Echo:", self.name, x)
        return x
# graphpack: end

project = graphpack.get_or_create_project("myproj", "./")

fn_echo = project.set_function("echo_function", kind="serving", image="mlrun/mlrun")

graph_echo = fn_echo.set_topology("flow")

graph_echo.to(class_name="Echo", name="pre-process", some_arg="abc")

graph_echo.plot(rankdir="LR")
echo_server = fn_echo.to_mock_server(current_function="*")

result = echo_server.test("", {"inputs": 123})
echo_server.wait_for_completion()

print(result)
'''

HANDLER_FUNC_FILE = '''
import pandas as pd
import graphpack
import graphpack.utils
import os
import json

def test(event):
    serving_spec = graphpack.utils.get_serving_spec()
    server_context = graphpack.serving.GraphServer().from_dict(serving_spec)
    context = graphpack.serving.GraphContext(server=server_context)
    param = context.get_param("Test")
    return param
'''

HANDLER_FUNC = '''
import graphpack
project = graphpack.get_or_create_project("myproj", "./")
serving_func_handler = project.set_function(
    name="serving-handler-func",
    func="serving-handler-func.py",
    image="mlrun/mlrun",
    kind="serving",
)
serving_func_handler.spec.parameters = {"Test": "test"}
graph = serving_func_handler.set_topology("flow")

graph.to(name="test", handler="test").respond()
server = serving_func_handler.to_mock_server()
print(server.test("/"))
'''

ERRORS = '''
import graphpack

class MyClass:
    def __init__(self, context, name=None):
        self.name = name
    def do(self, x):
        raise ValueError("bad input " + str(x))

class ErrHandler:
    def do(self, event):
        event.body = {"failed_step": event.origin_state, "error": event.error}
        return event

fn_preprocess2 = graphpack.new_function("preprocess", kind="serving", image="mlrun/mlrun")
graph = fn_preprocess2.set_topology("flow")
graph.to(handler="(event)", name="pre-process")
graph.add_step("MyClass", name="my-class", after="pre-process").error_handler("catcher")
graph.add_step("ErrHandler", name="catcher", full_event=True, after="").respond()
err_stream = "memory://errors"
fn_preprocess2.spec.error_stream = err_stream
fn_preprocess2.add_child_function('enrich',
                      './entity_extraction.ipynb',
                      image='mlrun/mlrun',
                      requirements=["storey", "sklearn"])
server = fn_preprocess2.to_mock_server()
print(server.test("/", 5))
server.wait_for_completion()
'''


def run(tmp_path, code, name="snippet.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_echo_class_example(tmp_path):
    out = run(tmp_path, ECHO).splitlines()
    assert "Echo: pre-process {'inputs': 123}" in out
    assert out[-1].startswith("{'id': '") and len(eval(out[-1])["id"]) == 32


def test_single_handler_step_reads_its_parameter(tmp_path):
    (tmp_path / "serving-handler-func.py").write_text(HANDLER_FUNC_FILE)
    assert run(tmp_path, HANDLER_FUNC).strip().splitlines()[-1] == "test"


def test_error_handler_per_step(tmp_path):
    out = run(tmp_path, ERRORS).strip().splitlines()[-1]
    assert eval(out) == {"failed_step": "my-class", "error": "bad input 5"}
