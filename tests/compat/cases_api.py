"""More differential cases: graph editing and model routes, graphs in the style of MLRun's own
serving tests, and the names MLRun users import (module paths, to_dict, create_graph_server,
new_function). Same form as cases.py."""
from __future__ import annotations

from .cases import BY_NAME, NON_LEAF, Case, flow, get, post


def api_cases(remote_url: str) -> list[Case]:
    """Every case of this module; ``remote_url`` is the local HTTP echo server."""
    return more_builder_cases(remote_url) + mlrun_test_style_cases() + name_cases(remote_url)


def more_builder_cases(remote_url: str) -> list[Case]:
    """Merge, graph editing (del, clear_children, path_to_step), versioned routes, remote models,
    event headers and triggers."""
    cases: list[Case] = []
    add = cases.extend
    add(flow("async", """
        graph.to("Tag", name="a").to("Tag", name="b")
        graph.add_step("Tag", name="c", after="a")
        graph.add_step(handler="(event)", name="join", after="b").respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="async-fan-out-responder-on-one-branch"))
    add(flow("async", """
        graph.to("Tag", name="a").to("Tag", name="b")
        graph.add_step("Tag", name="c", after="a")
        graph.add_step(api.__name__ + ".serving.merger.Merge", name="merge", after=["b", "c"]).respond()
        server = fn.to_mock_server()
        """, post({"v": 1}, event_id="mg"), name="merge-two-branches"))
    add(flow("both", """
        graph.to("Tag", name="a").to("Tag", name="b").to("Tag", name="c").respond()
        del graph["c"]
        graph["b"].respond()
        output = sorted(graph.steps)
        server = fn.to_mock_server()
        """, post({}), name="delete-a-step"))
    add(flow("both", """
        router = graph.to("*", name="r")
        router.add_route("m1", class_name="Sum", model_path="x")
        router.add_route("m2", class_name="Sum", model_path="x")
        router.clear_children(["m2"])
        router.respond()
        output = [sorted(router.routes), graph.path_to_step("r/m1").name]
        server = fn.to_mock_server()
        """, post({"inputs": [[1, 1]]}, "/v2/models/m1/infer", event_id="cc"),
        post({"inputs": [[1, 1]]}, "/v2/models/m2/infer"), name="router-clear-children", models=True))
    add([Case("router-model-metadata-and-versions", """
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router")
        fn.add_model("m1:v1", class_name="Sum", model_path="x")
        fn.add_model("m1:v2", class_name="Const", model_path="x", value=5)
        server = fn.to_mock_server()
        """, [post({"inputs": [[1, 2]]}, "/v2/models/m1/versions/v1/infer", event_id="v1"),
              post({"inputs": [[1, 2]]}, "/v2/models/m1/versions/v2/infer", event_id="v2"),
              get("/v2/models/m1/versions/v2"), get("/v2/models/")], models=True)])
    add([Case("router-remote-model-url", f"""
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router")
        fn.add_model("remote", model_url="{remote_url}/model")
        server = fn.to_mock_server()
        """, [post({"inputs": [1]}, "/v2/models/remote/infer")])])
    add(flow("both", """
        graph.to("EventInfo", name="info", full_event=True).respond()
        server = fn.to_mock_server()
        """, post({"a": 1}, "/", event_id="h1", headers={"MLRUN-EVENT-PATH": "/from/header"}), name="event-path-header"))
    add(flow("async", """
        import importlib
        trigger = importlib.import_module(api.__name__ + ".serving.server").MockTrigger("v3io-stream", "stream")
        graph.to("EventInfo", name="info", full_event=True).respond()
        server = fn.to_mock_server()
        """, post({"a": 1}, "/p", event_id="t1"), name="full-event-fields-async"))
    add(flow("both", """
        graph.to("Tag", name="a").respond().to("Tag", name="b").to("Tag", name="c")
        output = [graph["b"].after, graph["c"].after]
        server = fn.to_mock_server()
        """, post({}), name="respond-returns-the-step", differs=NON_LEAF,
        expected={"output": [["a"], ["b"]], "answers": [{"trail": ["a"]}]}))
    return cases


def mlrun_test_style_cases() -> list[Case]:
    """Graphs in the style of MLRun's own serving tests (list bodies, visits counted on the
    context, insertion with before=, an error handler in the middle of a chain)."""
    chain = """
class Chain:
    def __init__(self, context, name=None, **kw):
        self.context, self.name = context, name
    def do(self, x):
        visits = getattr(self.context, "visits", None)
        if visits is not None:
            visits[self.name] = visits.get(self.name, 0) + 1
        return list(x) + [self.name]

class Raiser:
    def __init__(self, context=None, name=None, **kw):
        self.name = name
    def do(self, x):
        raise ValueError("raiser fails")

class EchoError:
    def do(self, event):
        event.body = {"origin_state": event.origin_state, "failed": bool(event.error)}
        return event
"""
    cases: list[Case] = []
    add = cases.extend
    add(flow("sync", chain + """
graph.add_step(name="s2", class_name="Chain")
graph.add_step(name="s1", class_name="Chain", before="s2")
graph.add_step(name="s3", class_name="Chain", after="s2")
server = fn.to_mock_server()
""", post([]), name="insert-before-the-first-step"))
    add(flow("sync", chain + """
graph.add_step(name="s1", class_name="Chain")
graph.add_step(name="s3", class_name="Chain", after="$prev")
graph.add_step(name="s2", class_name="Chain", after="s1", before="s3")
server = fn.to_mock_server()
""", post([]), name="insert-between-two-steps"))
    add(flow("sync", chain + """
graph.to(name="s1", handler="(event + 1)").to(name="s2", handler="json.dumps")
server = fn.to_mock_server()
""", post(5), name="handler-by-module-path"))
    add(flow("sync", chain + """
graph.add_step(name="s1", class_name="Chain")
graph.add_step(name="raiser", class_name="Raiser", after="$prev").error_handler("catch")
graph.add_step(name="s3", class_name="Chain", after="$prev")
graph.add_step(name="catch", class_name="EchoError").full_event = True
output = graph["s3"].after
server = fn.to_mock_server()
""", post([]), name="error-handler-mid-chain-sync", differs=BY_NAME,
        expected={"output": ["raiser"], "answers": [{"origin_state": "raiser", "failed": True}]}))
    add(flow("async", chain + """
graph.to("Chain", name="s1").to("Raiser").respond().error_handler(
    name="catch", class_name="EchoError", full_event=True).to("Chain", name="s3")
server = fn.to_mock_server()
output = graph["s3"].after
""", post([]), name="error-handler-on-the-responder-async"))
    add(flow("async", chain + """
queue = graph.to(name="s1", class_name="Chain").to("$queue", "q1", path="")
s2 = queue.to(name="s2", class_name="Chain", function="some_function")
s2.to(name="s4", class_name="Chain")
s2.to(name="s5", class_name="Chain").respond()
queue.to(name="s3", class_name="Chain", function="some_other_function")
server = fn.to_mock_server()
server.context.visits = {}
after = lambda: dict(sorted(server.context.visits.items()))
""", post([]), name="queue-fan-out-with-visits"))
    return cases


def name_cases(remote_url: str) -> list[Case]:
    """Names MLRun users import, step objects' to_dict(), create_graph_server, new_function."""
    modules = "import importlib\nmod = lambda m: importlib.import_module(api.__name__ + m)\n"
    return [
        Case("names-at-mlrun-module-paths", modules + """
names = {
    ".serving": ["V2ModelServer", "ModelRouter", "VotingEnsemble", "GraphServer", "GraphContext",
                 "create_graph_server", "TaskStep", "RouterStep", "QueueStep", "ErrorStep"],
    ".serving.server": ["GraphServer", "GraphContext", "create_graph_server", "MockTrigger"],
    ".serving.v2_serving": ["V2ModelServer"],
    ".serving.routers": ["BaseModelRouter", "ModelRouter", "VotingEnsemble", "ParallelRun", "ParallelRunnerModes"],
    ".serving.states": ["RouterStep", "TaskStep", "QueueStep", "FlowStep", "RootFlowStep", "ErrorStep", "GraphError"],
    ".serving.remote": ["RemoteStep", "BatchHttpRequests"],
    ".serving.merger": ["Merge"],
    ".errors": ["MLRunBaseError", "MLRunInvalidArgumentError", "MLRunInvalidArgumentTypeError", "MLRunRuntimeError",
                "MLRunValueError", "MLRunNotFoundError", "MLRunHTTPError", "MLRunHTTPStatusError", "MLRunBadRequestError"],
}
output = {m: [n for n in ns if not hasattr(mod(m), n)] for m, ns in names.items()}
modes = mod(".serving.routers").ParallelRunnerModes
output["modes"] = [m.value for m in modes.all()] + [modes.thread == "thread"]
"""),
        Case("step-objects-to-dict", modules + f"""
remote, routers = mod(".serving.remote"), mod(".serving.routers")
objects = [remote.RemoteStep(name="r", url="{remote_url}", input_path="a", result_path="b", foo=1),
           remote.RemoteStep(url="{remote_url}"), remote.BatchHttpRequests(url="{remote_url}"),
           api.serving.V2ModelServer(name="m", model_path="p", extra=3), routers.ModelRouter(),
           routers.VotingEnsemble(weights={{"a": 3}}), routers.ParallelRun(extend_event=True)]
keys = ("url", "retries", "return_json", "foo", "model_path", "extra", "weights", "extend_event", "executor_type")
output = []
for obj in objects:
    d = obj.to_dict()
    output.append({{"class": d["class_name"].split(".")[-1], "name": d["name"], "kind": d.get("kind"),
                   "paths": [d.get("input_path"), d.get("result_path")],
                   "args": {{k: d["class_args"][k] for k in keys if k in d["class_args"]}}}})
"""),
        Case("create-graph-server", modules + """
server = api.serving.create_graph_server(graph=mod(".serving.states").RouterStep(), parameters={"value": 9})
server.graph.add_route("my", class_name="Const")
server.init_states(None, globals(), is_mock=True)
server.init_object(globals())
d = server.to_dict()
output = [d["parameters"], d["graph"]["kind"], sorted(d["graph"]["routes"]), d["version"]]
""", [post({"inputs": [[1], [2]]}, "/v2/models/my/infer", event_id="cg")], models=True),
        Case("new-function-command", """
import os, tempfile
path = os.path.join(tempfile.mkdtemp(), "steps_code.py")
with open(path, "w") as f:
    f.write("class Twice:\\n    def do(self, x):\\n        return x * 2\\n")
fn = api.new_function("cmd", kind="serving", command=path)
graph = fn.set_topology("flow", engine="sync")
graph.to("Twice", name="twice")
server = fn.to_mock_server()
""", [post(21)]),
        Case("mock-event-and-serving-spec", modules + """
import json
fn = api.new_function("t", kind="serving")
fn.spec.parameters = {"p": 2}
graph = fn.set_topology("flow", engine="sync")
graph.to("Inc", name="a", by=5).to(handler="(event)", name="b")
srv = fn.to_mock_server()
event = mod(".serving.server").MockEvent(body={"v": 1}, path="/x", event_id="e1")
spec = json.loads(fn._get_serving_spec())
output = [srv.run(event, get_body=True), spec["parameters"], sorted(spec["graph"]["steps"]),
          spec["graph"]["steps"]["a"]["class_args"], spec["function_uri"].split("/")[-1]]
"""),
        Case("new-function-unknown-keyword", """
fn = api.new_function("t", kind="serving", no_such_argument=1)
"""),
        Case("except-clauses-written-for-mlrun", modules + """
errors = mod(".errors")
fn = api.new_function("t", kind="serving")
graph = fn.set_topology("flow", engine="sync")
graph.to("Tag", name="a")
caught = []
for label, action in [
        ("topology twice", lambda: fn.set_topology("flow")),
        ("unknown after", lambda: graph.add_step("Tag", name="x", after="nothing")),
        ("queue without function", lambda: graph["a"].to(">>", "q", path="").to("Tag", name="b")),
        ("set_flow without force", lambda: graph.set_flow([dict(class_name="Tag", name="c")])),
        ("error_handler without a step", lambda: graph["a"].error_handler()),
        ("graph handler with before", lambda: graph.error_handler(name="e", handler="(event)", before="a"))]:
    try:
        action()
    except errors.MLRunInvalidArgumentError:
        caught.append(label)
output = caught
"""),
        Case("remote-connection-refused", """
import socket
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
fn = api.new_function("t", kind="serving")
graph = fn.set_topology("flow", engine="async")
graph.to("$remote", name="r", url=f"http://127.0.0.1:{port}/x", retries=0).error_handler(
    name="eh", handler="(event)", full_event=True)
graph["r"].respond()
graph["eh"].respond()
class Seen:
    def do(self, event):
        event.body = {"origin": event.origin_state, "error": type(event.error).__name__ if not isinstance(event.error, str) else "str"}
        return event
server = fn.to_mock_server()
""", [post({"a": 1})]),
    ]
