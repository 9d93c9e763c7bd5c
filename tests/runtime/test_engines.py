"""Every graph case runs under both engines and must give the same results (DESIGN §4.1-4.4)."""
import asyncio
import json

import pytest

import graphpack
from graphpack import RequestFailed

ENGINES = ["sync", "async"]


def flow(engine, **fn_args):
    fn = graphpack.new_function("t", **fn_args)
    return fn, fn.set_topology("flow", engine=engine)


class Add:
    def __init__(self, context, name=None, amount=1):
        self.context, self.name, self.amount = context, name, amount

    def do(self, x):
        return x + self.amount


class Tag:
    def __init__(self, name=None, **kw):
        self.name = name

    def do(self, body):
        body = dict(body)
        body.setdefault("trail", []).append(self.name)
        return body


class Boom:
    def do(self, x):
        raise ValueError(f"boom on {x}")


class Catcher:
    def do_event(self, event):
        event.body = {"caught": event.error, "origin": event.origin_state, "was": event.body}
        return event


class AsyncDouble:
    async def do(self, x):
        await asyncio.sleep(0.001)
        return x * 2


SEEN = []


def record(x):
    SEEN.append(x)
    return x


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


@pytest.mark.parametrize("engine", ENGINES)
def test_chain_with_classes_handlers_and_expressions(engine):
    fn, graph = flow(engine)
    graph.to(class_name=Add, name="a", amount=10).to(handler="(event * 3)", name="b") \
        .to("storey.Map", name="c", _fn="(event - 1)").to(handler=record, name="d").respond()
    server = fn.to_mock_server()
    assert server.test("/", 2) == (2 + 10) * 3 - 1
    assert SEEN == [35]


@pytest.mark.parametrize("engine", ENGINES)
def test_class_by_name_in_caller_namespace_gets_context_name_and_args(engine):
    fn, graph = flow(engine)
    graph.to(class_name="Add", name="plus", amount=5).respond()
    server = fn.to_mock_server()
    assert server.test("/", 1) == 6
    step = server.graph["plus"]
    assert step.class_args == {"amount": 5}


@pytest.mark.parametrize("engine", ENGINES)
def test_input_and_result_path(engine):
    fn, graph = flow(engine)
    graph.to(handler="(event.upper())", name="up", input_path="req.body", result_path="resp").respond()
    server = fn.to_mock_server()
    assert server.test("/", {"req": {"body": "x"}}) == {"req": {"body": "x"}, "resp": "X"}


@pytest.mark.parametrize("engine", ENGINES)
def test_full_event_step_sees_request_attributes(engine):
    def look(event):
        event.body = {"path": event.path, "method": event.method, "id": event.id,
                      "h": event.get_header("x-thing")}
        return event

    fn, graph = flow(engine)
    graph.to(handler=look, name="look", full_event=True).respond()
    server = fn.to_mock_server()
    out = server.test("/some/path", {"a": 1}, headers={"X-Thing": "v"}, event_id="e1")
    assert out == {"path": "/some/path", "method": "POST", "id": "e1", "h": "v"}


@pytest.mark.parametrize("engine", ENGINES)
def test_branches_get_their_own_copy_and_responder_answers(engine):
    fn, graph = flow(engine)
    start = graph.to(class_name=Tag, name="start")
    start.to(class_name=Tag, name="left").to(handler=record, name="left-rec")
    start.to(class_name=Tag, name="right").respond()
    server = fn.to_mock_server()
    assert server.test("/", {}) == {"trail": ["start", "right"]}
    server.wait_for_completion()
    assert SEEN == [{"trail": ["start", "left"]}]


@pytest.mark.parametrize("engine", ENGINES)
def test_respond_on_a_non_leaf_step_and_downstream_still_runs(engine):
    fn, graph = flow(engine)
    graph.to(class_name=Add, name="a").respond().to(class_name=Add, name="b", amount=100).to(handler=record, name="rec")
    server = fn.to_mock_server()
    assert server.test("/", 1) == 2
    server.wait_for_completion()
    assert SEEN == [102]


def test_no_responder_sync_returns_last_output_async_returns_id():
    for engine, check in (("sync", lambda out, eid: out == 4), ("async", lambda out, eid: out == {"id": eid})):
        fn, graph = flow(engine)
        graph.to(class_name=Add, name="a").to(class_name=Add, name="b").to(handler=record, name="rec")
        server = fn.to_mock_server()
        out = server.test("/", 2, event_id="ev-1")
        server.wait_for_completion()
        assert check(out, "ev-1"), (engine, out)
    assert SEEN == [4, 4]


@pytest.mark.parametrize("engine", ENGINES)
def test_error_handler_output_is_the_response(engine):
    fn, graph = flow(engine)
    graph.to(class_name=Add, name="a").to(class_name=Boom, name="bad").error_handler("catcher") \
        .to(class_name=Add, name="never").respond()
    graph.add_step(class_name=Catcher, name="catcher", after="")
    server = fn.to_mock_server()
    out = server.test("/", 1)
    assert out == {"caught": "boom on 2", "origin": "bad", "was": 2}


@pytest.mark.parametrize("engine", ENGINES)
def test_error_handler_with_before_resumes_the_flow(engine):
    def fix(event):
        event.body = 1000
        return event

    fn, graph = flow(engine)
    graph.to(class_name=Boom, name="bad").to(class_name=Add, name="after", amount=1).respond()
    graph["bad"].error_handler(name="fixer", handler=fix, full_event=True, before="after")
    server = fn.to_mock_server()
    assert server.test("/", 5) == 1001


@pytest.mark.parametrize("engine", ENGINES)
def test_graph_level_error_handler_catches_any_step(engine):
    fn, graph = flow(engine)
    graph.to(class_name=Add, name="a").to(class_name=Boom, name="bad").respond()
    graph.error_handler(name="catch-all", class_name=Catcher)
    server = fn.to_mock_server()
    assert server.test("/", 1) == {"caught": "boom on 2", "origin": "bad", "was": 2}


@pytest.mark.parametrize("engine", ENGINES)
def test_unhandled_error_is_500_naming_the_step_without_traceback(engine):
    fn, graph = flow(engine)
    graph.to(class_name=Add, name="a").to(class_name=Boom, name="bad").respond()
    server = fn.to_mock_server()
    with pytest.raises(RequestFailed) as info:
        server.test("/", 1)
    assert info.value.status_code == 500
    resp = server.test("/", 1, silent=True)
    assert resp.status_code == 500
    assert resp.body == {"error": "ValueError: boom on 2", "step": "bad"}


def test_verbose_error_carries_the_traceback():
    fn, graph = flow("sync")
    graph.to(class_name=Boom, name="bad").respond()
    fn.spec.verbose = True
    resp = fn.to_mock_server().test("/", 1, silent=True)
    assert resp.status_code == 500 and "Traceback" in resp.body["traceback"]


@pytest.mark.parametrize("engine", ENGINES)
def test_http_error_and_response_objects_set_the_status(engine):
    def deny(x):
        if x == "no":
            raise graphpack.HTTPError(403, "not allowed")
        return graphpack.Response(body={"ok": x}, status_code=201, content_type="application/json")

    fn, graph = flow(engine)
    graph.to(handler=deny, name="deny").respond()
    server = fn.to_mock_server()
    denied = server.test("/", "no", silent=True)
    assert (denied.status_code, denied.body) == (403, {"error": "not allowed", "step": "deny"})
    created = server.test("/", "yes", get_body=False)
    assert (created.status_code, created.body) == (201, {"ok": "yes"})


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_json_with_json_content_type_is_400(engine):
    fn, graph = flow(engine)
    graph.to(handler="(event)", name="same").respond()
    server = fn.to_mock_server()
    resp = server.test("/", b"{not json", content_type="application/json", silent=True)
    assert resp.status_code == 400 and "not valid JSON" in resp.body["error"]
    assert server.test("/", b'{"a": 1}') == {"a": 1}
    assert server.test("/", "plain words", content_type="text/plain") == "plain words"


@pytest.mark.parametrize("engine", ENGINES)
def test_queue_hop_in_the_mock_is_serialised_as_on_the_wire(engine):
    seen_ids = []

    def child(event):
        seen_ids.append((event.id, type(event.body).__name__))
        return event

    fn, graph = flow(engine)
    graph.to(handler="(event)", name="pre").to(">>", "q1", path="s3://bucket/q1") \
        .to(handler=child, name="child-step", function="enricher", full_event=True).respond()
    fn.add_child_function("enricher", "enrich.py")
    server = fn.to_mock_server()
    assert server.test("/", {"when": 1}, event_id="id-7") == {"when": 1}
    assert seen_ids == [("id-7", "dict")]
    with pytest.raises(RequestFailed) as info:
        server.test("/", {"bad": {1, 2}})
    assert "q1" in str(info.value) and info.value.status_code == 500


@pytest.mark.parametrize("engine", ENGINES)
def test_builtin_filter_flatmap_extend(engine):
    fn, graph = flow(engine)
    graph.to("storey.FlatMap", name="split", _fn="(event['items'])") \
        .to("storey.Filter", name="odd", _fn="(event % 2 == 1)") \
        .to("mlrun.serving.Map", name="wrap", _fn="({'v': event})") \
        .to("storey.Extend", name="enrich", _fn='({"tag": "something"})') \
        .to(handler=record, name="rec")
    server = fn.to_mock_server()
    server.test("/", {"items": [1, 2, 3]})
    server.wait_for_completion()
    assert SEEN == [{"v": 1, "tag": "something"}, {"v": 3, "tag": "something"}]


@pytest.mark.parametrize("engine", ENGINES)
def test_async_steps_run_under_both_engines(engine):
    fn, graph = flow(engine)
    graph.to(class_name=AsyncDouble, name="double").to(class_name=Add, name="a").respond()
    server = fn.to_mock_server()
    assert [server.test("/", i) for i in range(3)] == [1, 3, 5]
    server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_two_start_steps_both_run(engine):
    fn, graph = flow(engine)
    graph.to(handler=record, name="one")
    graph.to(class_name=Add, name="two").respond()
    server = fn.to_mock_server()
    assert server.test("/", 1) == 2
    server.wait_for_completion()
    assert SEEN == [1]


@pytest.mark.parametrize("engine", ENGINES)
def test_context_params_and_secrets(engine, monkeypatch, tmp_path):
    class Reader:
        def __init__(self, context):
            self.context = context

        def do(self, key):
            return {"param": self.context.get_param(key, "dflt"), "secret": self.context.get_secret(key)}

    monkeypatch.setenv("TOKEN", "env-value")
    secret_file = tmp_path / "secrets.json"
    secret_file.write_text(json.dumps({"PASSWORD": "file-value"}))
    fn, graph = flow(engine)
    fn.spec.parameters = {"threshold": 0.4}
    fn.with_secrets("env", ["TOKEN"]).with_secrets("file", str(secret_file))
    graph.to(class_name=Reader, name="r").respond()
    server = fn.to_mock_server()
    assert server.test("/", "threshold") == {"param": 0.4, "secret": None}
    assert server.test("/", "TOKEN") == {"param": "dflt", "secret": "env-value"}
    assert server.test("/", "PASSWORD") == {"param": "dflt", "secret": "file-value"}


@pytest.mark.parametrize("engine", ENGINES)
def test_error_stream_receives_failed_events(engine):
    from graphpack.queues import open_queue

    fn, graph = flow(engine)
    graph.to(class_name=Boom, name="bad").respond()
    fn.spec.error_stream = f"memory://errors-{engine}"
    server = fn.to_mock_server()
    server.test("/", 3, silent=True)
    queue = open_queue(f"memory://errors-{engine}")
    items = [item for shard in range(queue.shards) for item in queue.read(shard, "g", 10, 0)]
    records = [json.loads(item.data) for item in items]
    assert [(r["step"], r["body"]) for r in records] == [("bad", 3)]
    assert "boom on 3" in records[0]["error"]


@pytest.mark.parametrize("engine", ENGINES)
def test_failure_inside_a_chain_names_the_failing_step(engine):
    fn, graph = flow(engine)
    graph.to(handler="(event + 'x')", name="one").to(handler="str.upper", name="two") \
        .to(handler="int", name="three").to(handler="(event * 2)", name="four").respond()
    server = fn.to_mock_server()
    resp = server.test("/", "a", silent=True)  # not JSON: stays a string
    assert resp.status_code == 500
    assert resp.body["step"] == "three" and "invalid literal for int()" in resp.body["error"]
    fn, graph = flow(engine)
    graph.to(handler="(event + 1)", name="one").to(handler="(event * 2)", name="two").respond()
    assert fn.to_mock_server().test("/", 3) == 8


def test_stream_events_are_processed_before_they_are_answered():
    """An async graph without a responder answers http at once, but a stream record only after
    processing (so the stream is not acknowledged before the work is done)."""
    done = []

    class Slow:
        async def do(self, x):
            await asyncio.sleep(0.05)
            done.append(x)
            return x

    fn, graph = flow("async")
    graph.to(class_name=Slow, name="slow")
    server = fn.to_mock_server()

    async def scenario():
        http = await server.run_async(graphpack.Event(1, path="/"))
        assert http.body == {"id": http.body["id"]} and done == []
        stream = graphpack.Event(2, path="/")
        stream.trigger = "v3ioStream"
        await server.run_async(stream)
        assert 2 in done

    asyncio.run(scenario())
