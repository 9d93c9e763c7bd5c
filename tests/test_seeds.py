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


CLASSIFIER = '''
import pickle
from typing import List

import numpy as np
from cloudpickle import load
import graphpack

class ClassifierModel(graphpack.serving.V2ModelServer):
    def load(self):
        """load and initialize the model and/or other elements"""
        model_file, extra_data = self.get_model(".pkl")
        self.model = load(open(model_file, "rb"))

    def predict(self, body: dict) -> List:
        """Generate model predictions from sample."""
        feats = np.asarray(body["inputs"])
        result: np.ndarray = self.model.predict(feats)
        return result.tolist()
'''

ROUTER = CLASSIFIER + '''
from sklearn.datasets import load_iris

fn = graphpack.new_function("serving", kind="serving", image="mlrun/mlrun")
# set the topology/router
graph = fn.set_topology("router")

# Add the model
fn.add_model("model1", class_name="ClassifierModel", model_path=MODEL_PATH)

# Add additional models
#fn.add_model("model2", class_name="ClassifierModel", model_path="<path2>")

# create and use the graph simulator
server = fn.to_mock_server()
x = load_iris()['data'].tolist()
result = server.test("/v2/models/model1/infer", {"inputs": x})

print(result)
'''

FLOW = CLASSIFIER + '''
from sklearn.datasets import load_iris
x = load_iris()['data'].tolist()

fn2 = graphpack.code_to_function("serving_example_flow",
                             kind="serving",
                             image="mlrun/mlrun")

graph2 = fn2.set_topology("flow")

graph2_enrich = graph2.to("storey.Extend", name="enrich", _fn='({"tag": "something"})')

# add an Ensemble router with two child models (routes)
router = graph2.add_step(graphpack.serving.ModelRouter(), name="router", after="enrich")
router.add_route("m1", class_name="ClassifierModel", model_path=MODEL_PATH)
router.respond()

# Add additional models
#router.add_route("m2", class_name="ClassifierModel", model_path=path2)

# plot the graph (using Graphviz)
graph2.plot(rankdir='LR')
fn2_server = fn2.to_mock_server()

result = fn2_server.test("/v2/models/m1/infer", {"inputs": x})

print(result)
graph2_enrich.error_handler("catcher")
graph2.add_step("ErrHandler", name="catcher", full_event=True, after="")
graph2.plot(rankdir='LR')
fn2_server.wait_for_completion()
'''


def _iris_model(tmp_path):
    import pickle

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(data.data, data.target)))
    return path


def test_router_topology_with_a_model(tmp_path):
    # the docs load model.pkl from a URL; no network here, so the same model is trained locally
    code = f"MODEL_PATH = {str(_iris_model(tmp_path))!r}\n" + ROUTER
    result = eval(run(tmp_path, code).strip().splitlines()[-1])
    assert result["model_name"] == "model1" and len(result["outputs"]) == 150
    assert set(result["outputs"]) == {0, 1, 2} and result["outputs"][0] == 0


def test_flow_with_extend_router_and_respond(tmp_path):
    code = f"MODEL_PATH = {str(_iris_model(tmp_path))!r}\n" + FLOW
    result = eval(run(tmp_path, code).strip().splitlines()[-1])
    assert result["model_name"] == "m1" and len(result["outputs"]) == 150


HANDLER_FUNC_DEPLOY = HANDLER_FUNC.replace(
    '''server = serving_func_handler.to_mock_server()
print(server.test("/"))''',
    '''serving_func_handler.with_http(port=PORT)  # the docs' cluster picks a port; here a free one
# the docs' image (mlrun/mlrun) carries pandas; a function deployed from its own requirements names it
serving_func_handler.spec.requirements = ["pandas"]
serving_func_deploy = project.deploy_function("serving-handler-func")
try:
    print(serving_func_deploy.function.invoke(
        "/",
    ))
finally:
    project.down()''')


def test_single_handler_step_deployed_and_invoked(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "serving-handler-func.py").write_text(HANDLER_FUNC_FILE)
    out = run(tmp_path, f"PORT = {port}\n" + HANDLER_FUNC_DEPLOY).strip().splitlines()
    assert out[-1] == "test"
