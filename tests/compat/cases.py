"""The graphs the differential test runs on MLRun and on graphpack.

Every case is plain data (source code + requests) so the same case runs in both interpreters
(runner.py). The code sees ``api`` (``mlrun`` or ``graphpack``) and the classes of PRELUDE; it
leaves a ``server`` to send ``requests`` to, or an ``output`` to compare.

A case may name a documented difference (``differs``: the DESIGN §4 rule and the result
graphpack gives instead); the test then asserts graphpack's documented result and that MLRun
indeed answers otherwise.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

PRELUDE = '''
import json

class Echo:
    def __init__(self, context=None, name=None, **kw):
        self.name = name
        self.kw = kw
    def do(self, x):
        return x

class Inc:
    def __init__(self, context=None, name=None, by=1, **kw):
        self.by = by
    def do(self, x):
        if isinstance(x, dict):
            return {**x, "v": x.get("v", 0) + self.by}
        return x + self.by

class Tag:
    def __init__(self, context=None, name=None, **kw):
        self.name = name
    def do(self, x):
        x = dict(x) if isinstance(x, dict) else {"value": x}
        x.setdefault("trail", [])
        x["trail"] = x["trail"] + [self.name]
        return x

class Boom:
    def __init__(self, context=None, name=None, **kw):
        self.name = name
    def do(self, x):
        raise ValueError("boom " + json.dumps(x, sort_keys=True))

class Catcher:
    def do(self, event):
        event.body = {"caught": event.origin_state, "error": str(event.error).split(": ")[-1]}
        return event

class EventInfo:
    def do(self, event):
        event.body = {"path": event.path, "method": event.method, "id": event.id, "body": event.body}
        return event

class WithHandler:
    def __init__(self, context=None, name=None, **kw):
        pass
    def twice(self, x):
        return x * 2

class Params:
    def __init__(self, context, name=None, **kw):
        self.threshold = context.get_param("threshold", 0)
        self.kw = kw
    def do(self, x):
        return {"x": x, "threshold": self.threshold, "kw": self.kw}

def double(x):
    return x * 2

def add_ten(x):
    return x + 10

def with_context(x, context=None):
    return {"x": x, "param": context.get_param("p")}

def boom(x):
    raise ValueError("bad " + str(x))
'''

MODELS = '''
from typing import List

class Sum(api.serving.V2ModelServer):
    def load(self):
        self.model = sum
    def predict(self, body: dict) -> List:
        return [self.model(row) for row in body["inputs"]]

class Const(api.serving.V2ModelServer):
    def load(self):
        self.value = self.get_param("value", 1)
    def predict(self, body: dict) -> List:
        return [self.value for _ in body["inputs"]]
'''


@dataclass
class Case:
    """One graph and the requests sent to it (or an output to compare)."""

    name: str
    code: str
    requests: list[dict] = field(default_factory=list)
    differs: str | None = None  # the DESIGN rule graphpack follows instead of MLRun's behaviour
    expected: Any = None  # graphpack's documented result when ``differs`` is set
    models: bool = False
    skip_mlrun: str | None = None  # why MLRun does not run this case (it would hang, ...)

    @property
    def run_mlrun(self) -> bool:
        return self.skip_mlrun is None

    def payload(self) -> dict:
        code = PRELUDE + (MODELS if self.models else "") + textwrap.dedent(self.code)
        return {"name": self.name, "code": code, "requests": self.requests}


def post(body: Any = None, path: str = "/", **kw: Any) -> dict:
    if isinstance(body, bytes):  # JSON carries no bytes: runner.py turns this back into bytes
        body = {"$bytes": body.decode()}
    return {"path": path, "body": body, **kw}


def get(path: str = "/", **kw: Any) -> dict:
    return {"path": path, "method": "GET", **kw}


def flow(engine: str, body: str, *requests: dict, **kw: Any) -> list[Case]:
    """The same graph under one engine (``sync``/``async``) or both (``both``)."""
    engines = ["sync", "async"] if engine == "both" else [engine]
    name = kw.pop("name")
    return [Case(f"{name}-{e}" if engine == "both" else name,
                 f"fn = api.new_function('t', kind='serving')\ngraph = fn.set_topology('flow', engine={e!r})\n"
                 + textwrap.dedent(body), list(requests), **kw) for e in engines]


BY_NAME = ("seeds (000): error_handler('catcher') may name a step added separately, as MLRun's docs "
           "show; MLRun 1.12 itself wants class_name= or handler=")
OBJECTS = ("graphpack takes any class or instance as a step (class_name=Inc, Inc(by=1)); MLRun 1.12 "
           "only its own step objects and class-name strings")
SYNC_HANDLER = ("DESIGN §4.3: an error handler's return value becomes the body; MLRun's sync engine puts "
                "the Event object itself there and its mock fails with RecursionError")
NON_LEAF = ("DESIGN §4.2: respond() marks the answer, leaf or not, under both engines (MLRun's sync engine "
            "ignores it, its async engine answers only from a leaf)")
SYNC_BRANCHES = "DESIGN §4.1: both engines run the same graphs; the sync engine runs branches too"


def static_cases(remote_url: str) -> list[Case]:
    """The hand-written cases; ``remote_url`` is a local HTTP echo server (remote steps)."""
    cases: list[Case] = []
    add = cases.extend

    # -- the seed examples --------------------------------------------------------------
    add([Case("seed-echo-class", """
        fn_echo = api.new_function("echo_function", kind="serving", image="mlrun/mlrun")
        graph_echo = fn_echo.set_topology("flow")
        graph_echo.to(class_name="Echo", name="pre-process", some_arg="abc")
        server = fn_echo.to_mock_server(current_function="*")
        """, [post({"inputs": 123}, "", event_id="ev1")])])
    add([Case("seed-handler-param", """
        def test(event, context=None):
            return context.get_param("Test")
        fn = api.new_function("serving-handler-func", kind="serving", image="mlrun/mlrun")
        fn.spec.parameters = {"Test": "test"}
        graph = fn.set_topology("flow")
        graph.to(name="test", handler="test").respond()
        server = fn.to_mock_server()
        """, [get("/")])])
    add([Case("seed-error-handler-per-step", """
        class MyClass:
            def __init__(self, context, name=None):
                self.name = name
            def do(self, x):
                raise ValueError("bad input " + str(x))
        fn = api.new_function("preprocess", kind="serving", image="mlrun/mlrun")
        graph = fn.set_topology("flow")
        graph.to(handler="(event)", name="pre-process")
        graph.add_step("MyClass", name="my-class", after="pre-process").error_handler("catcher")
        graph.add_step("Catcher", name="catcher", full_event=True, after="").respond()
        server = fn.to_mock_server()
        """, [post(5)], differs=BY_NAME, expected={"answers": [{"caught": "my-class", "error": "bad input 5"}]})])
    add([Case("seed-router-topology", """
        fn = api.new_function("serving", kind="serving", image="mlrun/mlrun")
        graph = fn.set_topology("router")
        fn.add_model("model1", class_name="Sum", model_path="unused")
        fn.add_model("model2", class_name="Const", model_path="unused", value=7)
        server = fn.to_mock_server()
        """, [post({"inputs": [[1, 2], [3, 4]]}, "/v2/models/model1/infer", event_id="r1"),
              post({"inputs": [[1, 2]]}, "/v2/models/model2/infer", event_id="r2"),
              get("/v2/models/"),
              post({"inputs": [[1]], "model": "model2"}, "/v2/models/infer", event_id="r3")],
          models=True)])
    add([Case("seed-flow-extend-router-respond", """
        fn = api.new_function("serving_example_flow", kind="serving", image="mlrun/mlrun")
        graph = fn.set_topology("flow")
        graph.to("storey.Extend", name="enrich", _fn='({"tag": "something"})')
        router = graph.add_step(api.serving.ModelRouter(), name="router", after="enrich")
        router.add_route("m1", class_name="Sum", model_path="unused")
        router.respond()
        server = fn.to_mock_server()
        """, [post({"inputs": [[1, 2]]}, "/v2/models/m1/infer", event_id="f1")], models=True)])

    # -- builder methods ----------------------------------------------------------------
    add(flow("both", """
        graph.to("Inc", name="a").to("Inc", name="b", by=10).to(handler="double", name="c").respond()
        server = fn.to_mock_server()
        """, post(1), post(5), name="to-chain"))
    add(flow("both", """
        graph.to("Tag", name="a")
        graph.add_step("Tag", name="b", after="a")
        graph.add_step("Tag", name="c", after="$prev").respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="add-step-after"))
    add(flow("both", """
        graph.to("Tag", name="a").to("Tag", name="c").respond()
        graph.add_step("Tag", name="b", after="a", before="c")
        server = fn.to_mock_server()
        """, post({}), name="add-step-before"))
    add(flow("both", """
        graph.to("Tag", name="a")
        graph.add_step("Tag", name="b")
        graph["b"].after_step("a")
        graph["b"].respond()
        server = fn.to_mock_server()
        """, post({}), name="after-step"))
    add(flow("both", """
        graph.set_flow([dict(class_name="Tag", name="s1"), dict(handler="(event)", name="s2"),
                        dict(class_name="Tag", name="s3")]).respond()
        server = fn.to_mock_server()
        """, post({"k": 1}), name="set-flow-dicts"))
    add(flow("sync", """
        graph.to("Tag", name="a")
        graph.set_flow([dict(class_name="Tag", name="b")])
        """, name="set-flow-needs-force"))
    add(flow("both", """
        graph.to("Tag", name="old")
        graph.set_flow([dict(class_name="Tag", name="new")], force=True).respond()
        server = fn.to_mock_server()
        """, post({}), name="set-flow-force"))
    add(flow("both", """
        graph.to(handler="(event['x'] * 3)", name="expr").respond()
        server = fn.to_mock_server()
        """, post({"x": 2}), name="handler-expression"))
    add(flow("both", """
        graph.to("WithHandler", name="w", handler="twice").respond()
        server = fn.to_mock_server()
        """, post(21), name="class-handler-method"))
    add(flow("both", """
        graph.to("Params", name="p", extra=5).respond()
        fn.spec.parameters = {"threshold": 0.4}
        server = fn.to_mock_server()
        """, post(1), name="class-params-and-kwargs"))
    add(flow("both", """
        fn.spec.parameters = {"p": "value"}
        graph.to(handler="with_context", name="h").respond()
        server = fn.to_mock_server()
        """, post(3), name="handler-with-context"))
    add(flow("both", """
        graph.to(Inc(by=100), name="obj").respond()
        server = fn.to_mock_server()
        """, post(1), name="step-object", differs=OBJECTS, expected={"answers": [101]}))
    add(flow("both", """
        graph.to(class_name=Inc, name="cls", by=3).respond()
        server = fn.to_mock_server()
        """, post(1), name="step-class-object", differs=OBJECTS, expected={"answers": [4]}))
    add(flow("both", """
        graph.to("EventInfo", name="info", full_event=True).respond()
        server = fn.to_mock_server()
        """, post({"a": 1}, "/some/path", event_id="e7"), get("/other", event_id="e8"),
        post({"a": 1}, "/p", event_id="e9", headers={"MLRUN-EVENT-ID": "from-header"}),
        name="full-event"))
    add(flow("both", """
        graph.to(handler="(event)", name="h").respond()
        server = fn.to_mock_server()
        """, post('{"j": 1}'), post("text", content_type="text/plain"), post(b'{"b": 2}'),
        post("not json", content_type="application/json"), name="body-decoding"))

    # -- input_path / result_path ---------------------------------------------------------
    add(flow("both", """
        graph.to(handler="double", name="d", input_path="data.x", result_path="out").respond()
        server = fn.to_mock_server()
        """, post({"data": {"x": 4}}), post({"data": {"y": 4}, "keep": 1}), name="paths-handler"))
    add(flow("both", """
        graph.to("Inc", name="i", by=2, input_path="a", result_path="b.c").respond()
        server = fn.to_mock_server()
        """, post({"a": 1}), name="paths-class"))
    add(flow("both", """
        graph.to("Inc", name="i", result_path="r").respond()
        server = fn.to_mock_server()
        """, post({}), post(0), name="result-path-falsy-body"))
    cases[-1].differs = ("DESIGN §4.1: both engines give the same results; result_path on an empty or "
                         "falsy body replaces it (MLRun's sync rule; its async engine fails or nests)")
    cases[-1].expected = {"answers": [{"v": 1}, 1]}
    add(flow("both", """
        graph.to(handler="(event)", name="h", input_path="a").respond()
        server = fn.to_mock_server()
        """, post({"a": [1, 2]}), name="input-path-list"))

    # -- error handlers -------------------------------------------------------------------
    add(flow("both", """
        graph.to("Tag", name="a").to("Boom", name="b").error_handler("catcher")
        graph.add_step("Catcher", name="catcher", full_event=True, after="").respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="error-handler-step-by-name", differs=BY_NAME,
        expected={"answers": [{"caught": "b", "error": "1}"}]}))
    add(flow("both", """
        graph.to("Tag", name="a").to("Boom", name="b").error_handler(name="catcher", class_name="Catcher",
                                                                     full_event=True)
        graph["catcher"].respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="error-handler-step"))
    cases[-2].differs = SYNC_HANDLER
    cases[-2].expected = {"answers": [{"caught": "b", "error": "1}"}]}
    add(flow("both", """
        graph.to("Tag", name="a").to("Boom", name="b")
        graph.error_handler(name="catcher", class_name="Catcher", full_event=True)
        graph["a"].respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="error-handler-graph-non-leaf-responder",
        differs="DESIGN §4.2: respond() on a non-leaf step answers with its output; MLRun's sync engine "
                "recurses without end, its async engine answers with the graph error handler's output",
        expected={"answers": [{"v": 1, "trail": ["a"]}]}))
    add(flow("both", """
        graph.to("Tag", name="a").to("Boom", name="b").respond()
        graph.error_handler(name="catcher", class_name="Catcher", full_event=True)
        server = fn.to_mock_server()
        """, post({"v": 1}), name="error-handler-graph"))
    cases[-2].differs = SYNC_HANDLER
    cases[-2].expected = {"answers": [{"caught": "b", "error": "1}"}]}
    add(flow("both", """
        graph.to("Boom", name="b").error_handler(name="fix", handler="(dict(fixed=True))", before="c")
        graph.add_step("Tag", name="c", after="b").respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="error-handler-before"))
    cases[-2].differs = SYNC_BRANCHES
    cases[-2].expected = {"answers": [{"fixed": True, "trail": ["c"]}]}
    add(flow("both", """
        step = graph.to("Tag", name="a").error_handler(name="eh", handler="(event)")
        graph.add_step("Tag", name="next", after="$prev").respond()
        server = fn.to_mock_server()
        output_steps = sorted(graph["next"].after)
        """, post({}), name="error-handler-then-prev"))
    add(flow("both", """
        graph.to("Tag", name="a").to("Boom", name="b").respond()
        server = fn.to_mock_server()
        """, post({"v": 1}), name="unhandled-error"))
    add(flow("both", """
        graph.to("Tag", name="a").error_handler(name="eh", handler="(event)")
        graph["a"].respond()
        server = fn.to_mock_server()
        output = sorted(graph.steps)
        """, post({}), name="error-handler-returns-step"))

    # -- responders and branches ----------------------------------------------------------
    add(flow("async", """
        graph.to("Tag", name="a").to("Tag", name="b")
        graph.add_step("Tag", name="c", after="a").respond()
        server = fn.to_mock_server()
        """, post({}), name="async-branches-responder"))
    add(flow("async", """
        graph.to("Tag", name="a").to("Tag", name="b")
        server = fn.to_mock_server()
        """, post({}, event_id="no-resp"), name="async-no-responder"))
    add(flow("sync", """
        graph.to("Tag", name="a").to("Tag", name="b")
        server = fn.to_mock_server()
        """, post({}), name="sync-no-responder"))
    add(flow("async", """
        graph.to("Tag", name="a").to("Boom", name="b")
        server = fn.to_mock_server()
        """, post({"v": 1}, event_id="fails-later"), name="async-no-responder-step-fails"))
    add(flow("async", """
        class Slow:
            async def do(self, x):
                raise ValueError("async boom")
        graph.to("Tag", name="a").to("Slow", name="b")
        server = fn.to_mock_server()
        """, post({"v": 1}, event_id="fails-later"), name="async-no-responder-async-step-fails"))
    add(flow("sync", """
        graph.to("Tag", name="a")
        graph.to("Tag", name="b")
        server = fn.to_mock_server()
        """, post({}), name="sync-two-starts",
        differs=SYNC_BRANCHES,
        expected={"answers": [{"trail": ["b"]}]}))
    add(flow("async", """
        graph.to("Tag", name="a").respond()
        graph.add_step("Tag", name="b", after="a").respond()
        server = fn.to_mock_server()
        """, post({}), name="two-responders"))

    # -- built-in storey-style steps ------------------------------------------------------
    add(flow("async", """
        graph.to("storey.Map", name="m", _fn="(event * 2)").to("storey.Filter", name="f", _fn="(event > 5)") \\
             .to("storey.Extend", name="e", _fn="({'big': True})", input_path=None).respond()
        server = fn.to_mock_server()
        """, post({"x": 1}), name="storey-map-filter-extend-dict"))
    add(flow("async", """
        graph.to("storey.Map", name="m", _fn="({'v': event['v'] * 2})") \\
             .to("storey.Extend", name="e", _fn="({'w': event['v'] + 1})").respond()
        server = fn.to_mock_server()
        """, post({"v": 3}), name="storey-map-extend"))
    add(flow("async", """
        graph.to("storey.Filter", name="f", _fn="(event['v'] > 5)").respond()
        server = fn.to_mock_server()
        """, post({"v": 9}), name="storey-filter"))
    add(flow("async", """
        graph.to("storey.Filter", name="f", _fn="(event['v'] > 5)").respond()
        server = fn.to_mock_server()
        """, post({"v": 3}), name="storey-filter-drops-responder-event",
        skip_mlrun="MLRun never answers: the responder's event was filtered out (the request hangs)",
        differs="DESIGN §4.2: a responder that never sees the event answers with an empty body",
        expected={"answers": [None]}))

    # -- routers and ensembles ------------------------------------------------------------
    add([Case("router-paths", """
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router")
        fn.add_model("m1", class_name="Sum", model_path="x")
        fn.add_model("m2:v2", class_name="Const", model_path="x", value=3)
        server = fn.to_mock_server()
        """, [post({"inputs": [[1, 1]]}, "/v2/models/m1/predict", event_id="p1"),
              post({"inputs": [[1]]}, "/v2/models/m2/versions/v2/infer", event_id="p2"),
              get("/v2/models/m1/ready", event_id="rd"),
              post({"inputs": [[1]]}, "/v2/models/nope/infer"),
              post({"inputs": 5}, "/v2/models/m1/infer"),
              post({"inputs": [[1]], "id": "body-id"}, "/v2/models/m1/infer"),
              get("/v2/health"), get("/")], models=True)])
    add([Case("router-object-unnamed", """
        fn = api.new_function("r", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        router = graph.add_step(api.serving.ModelRouter())
        router.add_route("m1", class_name="Sum", model_path="x")
        output = router.name
        server = fn.to_mock_server()
        """, [post({"inputs": [[2, 2]]}, "/v2/models/m1/infer", event_id="o1")], models=True)])
    add([Case("router-result-path", """
        fn = api.new_function("r", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        router = graph.add_step("*", name="router", input_path="req", result_path="resp")
        router.add_route("m1", class_name="Sum", model_path="x")
        server = fn.to_mock_server()
        """, [post({"req": {"inputs": [[2, 2]]}}, "/v2/models/m1/infer", event_id="rp")], models=True)])
    add([Case("model-paths", """
        fn = api.new_function("r", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        graph.to("Sum", name="m", model_path="x", input_path="req", result_path="resp").respond()
        server = fn.to_mock_server()
        """, [post({"req": {"inputs": [[2, 3]]}, "keep": 1}, "/", event_id="mp")], models=True)])
    add([Case("voting-ensemble-regression", """
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router", api.serving.VotingEnsemble(vote_type="regression"))
        fn.add_model("a", class_name="Const", model_path="x", value=1.0)
        fn.add_model("b", class_name="Const", model_path="x", value=3.0)
        server = fn.to_mock_server()
        """, [post({"inputs": [[0], [0]]}, "/v2/models/infer", event_id="v1"),
              post({"inputs": [[0]]}, "/v2/models/a/infer", event_id="v2"),
              get("/v2/models/")], models=True)])
    add([Case("voting-ensemble-classification", """
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router", api.serving.VotingEnsemble(vote_type="classification"))
        fn.add_model("a", class_name="Const", model_path="x", value=1)
        fn.add_model("b", class_name="Const", model_path="x", value=2)
        fn.add_model("c", class_name="Const", model_path="x", value=2)
        server = fn.to_mock_server()
        """, [post({"inputs": [[0]]}, "/v2/models/VotingEnsemble/infer", event_id="c1")], models=True)])
    add([Case("voting-ensemble-weights", """
        fn = api.new_function("r", kind="serving")
        fn.set_topology("router", api.serving.VotingEnsemble(vote_type="regression", weights={"a": 3, "b": 1}))
        fn.add_model("a", class_name="Const", model_path="x", value=1.0)
        fn.add_model("b", class_name="Const", model_path="x", value=5.0)
        server = fn.to_mock_server()
        """, [post({"inputs": [[0]]}, "/v2/models/infer", event_id="w1"), get("/v2/models/")], models=True,
        differs="DESIGN §4.5: VotingEnsemble weights are normalised to sum to 1 when voting",
        expected={"answers": [{"id": "w1", "model_name": "VotingEnsemble", "outputs": [2.0]},
                              {"models": ["a", "b", "VotingEnsemble"], "weights": {"a": 3, "b": 1}}]})])
    add([Case("parallel-run-array", """
        fn = api.new_function("r", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        par = graph.to("*mlrun.serving.routers.ParallelRun", name="par", executor_type="array", extend_event=True)
        par.add_route("one", handler="(dict(one=1))")
        par.add_route("two", handler="(dict(two=2))")
        par.respond()
        server = fn.to_mock_server()
        """, [post({"base": 0})])])

    # -- queues ---------------------------------------------------------------------------
    add(flow("async", """
        graph.to("Tag", name="a").to(">>", "q", path="").to("Tag", name="b").respond()
        server = fn.to_mock_server()
        """, post({"k": 1}), name="queue-empty-path"))
    add([Case("queue-child-function-mock", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow", engine="async")
        graph.to("Tag", name="a").to(">>", "q", path="v3io:///projects/p/q") \\
             .to("Tag", name="b", function="child").respond()
        server = fn.to_mock_server(current_function="*")
        """, [post({"k": 1})], skip_mlrun="MLRun's mock opens the queue's v3io stream (needs a v3io server)",
        differs="DESIGN §4.7: the mock runs every function in-process and sends the event across the queue "
                "as on the wire; it needs no stream server (MLRun's mock connects to v3io)",
        expected={"answers": [{"k": 1, "trail": ["a", "b"]}]})])
    add([Case("queue-step-needs-function", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow", engine="async")
        graph.to("Tag", name="a").to(">>", "q", path="v3io:///projects/p/q").to("Tag", name="b")
        """)])

    # -- remote steps against a local HTTP server ------------------------------------------
    remote_module = "import importlib\nremote = importlib.import_module(api.__name__ + '.serving.remote')\n"
    remote = [
        ("remote-post", f"graph.to('$remote', name='r', url='{remote_url}/echo').respond()",
         [post({"a": 1})]),
        ("remote-subpath", f"graph.to('$remote', name='r', url='{remote_url}', subpath='$path').respond()",
         [post({"a": 1}, "/sub/x")]),
        ("remote-method-get", f"graph.to('$remote', name='r', url='{remote_url}/g', method='GET').respond()",
         [post({"a": 1})]),
        ("remote-url-expression",
         f"graph.to('$remote', name='r', url='{remote_url}', url_expression=\"endpoint + '/' + event['where']\").respond()",
         [post({"where": "w1"})]),
        ("remote-body-expression",
         f"graph.to('$remote', name='r', url='{remote_url}/b', body_expression=\"event['inner']\").respond()",
         [post({"inner": {"z": 1}})]),
        ("remote-paths",
         f"graph.to('$remote', name='r', url='{remote_url}/p', input_path='req', result_path='resp').respond()",
         [post({"req": {"q": 1}, "keep": True})]),
        ("remote-text", f"graph.to('$remote', name='r', url='{remote_url}/text', return_json=False).respond()",
         [post({"a": 1})]),
        ("remote-status-404", f"graph.to('$remote', name='r', url='{remote_url}/status/404', retries=0).respond()",
         [post({"a": 1})]),
        ("remote-object",
         f"graph.to(remote.RemoteStep(name='rr', url='{remote_url}/o', input_path='req', result_path='out'))"
         ".respond()", [post({"req": {"v": 1}})]),
        ("remote-two-objects",
         f"graph.to(remote.RemoteStep(name='r1', url='{remote_url}/one', result_path='one'))"
         f".to(remote.RemoteStep(name='r2', url='{remote_url}/two', result_path='two', input_path='x')).respond()",
         [post({"x": 1})]),
        ("batch-http",
         f"graph.to(remote.BatchHttpRequests(url='{remote_url}/batch')).respond()",
         [post([{"i": 1}, {"i": 2}, {"i": 3}])]),
    ]
    for name, body, requests in remote:
        add(flow("async", remote_module + body + "\nserver = fn.to_mock_server()\n", *requests, name=name))
    add(flow("sync", f"graph.to('$remote', name='r', url='{remote_url}/sync').respond()\n"
             "server = fn.to_mock_server()\n", post({"s": 1}), name="remote-sync"))

    # -- misc ---------------------------------------------------------------------------
    add([Case("set-topology-twice", """
        fn = api.new_function("t", kind="serving")
        fn.set_topology("flow")
        fn.set_topology("flow")
        """)])
    add([Case("set-topology-exist-ok", """
        fn = api.new_function("t", kind="serving")
        g1 = fn.set_topology("flow", engine="sync")
        g1.to("Tag", name="a").respond()
        g2 = fn.set_topology("flow", exist_ok=True)
        g2.to("Tag", name="b").respond()
        output = g1 is g2
        server = fn.to_mock_server()
        """, [post({})])])
    add([Case("add-model-to-flow-without-router", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow")
        graph.to("Tag", name="a")
        fn.add_model("m", class_name="Sum", model_path="x")
        """, models=True)])
    add([Case("add-model-router-step", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        graph.to("*", name="r1").respond()
        graph.add_step("*", name="r2", after="r1")
        fn.add_model("m", class_name="Sum", model_path="x", router_step="r1")
        output = [sorted(graph["r1"].routes), sorted(graph["r2"].routes)]
        """, models=True)])
    add([Case("add-model-two-routers", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow", engine="sync")
        graph.to("*", name="r1").respond()
        graph.add_step("*", name="r2", after="r1")
        fn.add_model("m", class_name="Sum", model_path="x")
        """, models=True)])
    add([Case("unknown-after", """
        fn = api.new_function("t", kind="serving")
        graph = fn.set_topology("flow")
        graph.add_step("Tag", name="a", after="nothing")
        """)])
    add([Case("model-ops", """
        class Ops(api.serving.V2ModelServer):
            def load(self):
                self.model = 1
            def predict(self, body):
                return body["inputs"]
            def explain(self, body):
                return {"why": len(body["inputs"])}
            def op_custom(self, event):
                return {"custom": event.body}
        fn = api.new_function("t", kind="serving")
        fn.set_topology("router")
        fn.add_model("m", class_name="Ops", model_path="x")
        server = fn.to_mock_server()
        """, [post({"inputs": [1]}, "/v2/models/m/explain", event_id="x1"),
              post({"q": 1}, "/v2/models/m/custom"),
              post({"nothing": 1}, "/v2/models/m/infer"),
              post({"inputs": [1]}, "/v2/models/m/weird")], models=True)])
    return cases
