"""A 2xx means stored (DESIGN §4.9): the event is answered only once its queue records are durable.

The root's part of a graph (``current_function=""``) pushes to a real file queue; a failed write
is injected in the queue's ``_append`` (the disk-full / read-only cases with a real filesystem
are in tests/packager/deploy/test_faults.py).
"""
from __future__ import annotations

import asyncio
import errno
import time
from concurrent.futures import Future

import pytest

import graphpack
from graphpack import RequestFailed
from graphpack.handlers import entry
from graphpack.queues import open_queue
from graphpack.queues.file import FileQueue
from graphpack.runtime.nuclio_shim import Context, TriggerInfo
from graphpack.runtime.nuclio_shim import Event as NuclioEvent

ENGINES = ["sync", "async"]


class Tag:
    def do(self, body):
        return {**body, "tagged": True}


def root_server(engine, queue_dir, responder_first=True, linger=None):
    fn = graphpack.new_function("root")
    graph = fn.set_topology("flow", engine=engine)
    options = {} if linger is None else {"linger": linger}
    if responder_first:
        graph.to(class_name=Tag, name="tag").respond().to(">>", "q1", path=str(queue_dir), **options) \
            .to(class_name=Tag, name="child-step", function="child")
    else:
        graph.to(class_name=Tag, name="tag").to(">>", "q1", path=str(queue_dir), **options) \
            .to(class_name=Tag, name="child-step", function="child")
    fn.add_child_function("child", __file__)
    return fn.to_mock_server(current_function="")


def stored(queue_dir) -> list:
    queue = open_queue(str(queue_dir))
    items = queue.read(0, "check", max_records=1000)
    queue.close()
    return [item.record()["body"] for item in items]


@pytest.fixture
def disk_full(monkeypatch):
    def fail(self, by_shard):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileQueue, "_append", fail)


@pytest.mark.parametrize("engine", ENGINES)
def test_answer_waits_for_the_durable_write(engine, tmp_path):
    server = root_server(engine, tmp_path / "q", linger=0.3)  # a long window: only waiting ends it
    started = time.monotonic()
    response, writes = server.run_deferred(graphpack.Event({"n": 1}))
    assert response.status_code == 200 and response.body == {"n": 1, "tagged": True}
    assert writes is not None and stored(tmp_path / "q") == []  # answered, not yet sent
    assert server.settle(response, writes.wait()) is response
    assert stored(tmp_path / "q") == [{"n": 1, "tagged": True}]
    assert time.monotonic() - started < 0.25  # the waiter ended the window
    assert server.test("/", {"n": 2}) == {"n": 2, "tagged": True}
    assert stored(tmp_path / "q")[-1] == {"n": 2, "tagged": True}  # test() returned: stored
    server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("responder_first", [True, False])
def test_failed_write_is_503_not_2xx_nor_400(engine, responder_first, tmp_path, disk_full):
    server = root_server(engine, tmp_path / "q", responder_first=responder_first)
    response = server.run(graphpack.Event({"n": 1}))
    assert response.status_code == 503, response.body
    assert response.headers["Retry-After"] == "1"
    assert "No space left on device" in response.body["error"] and str(tmp_path / "q") in response.body["error"]
    assert response.body["step"] == "q1"
    with pytest.raises(RequestFailed) as failed:
        server.test("/", {"n": 2})
    assert failed.value.status_code == 503
    server.wait_for_completion()


def test_async_engine_without_responder_answers_after_the_write(tmp_path):
    """Before, an async graph without a responder answered ``{"id"}`` at once and pushed later."""

    class Slow:
        async def do(self, body):
            await asyncio.sleep(0.05)
            return body

    fn = graphpack.new_function("root")
    graph = fn.set_topology("flow", engine="async")
    graph.to(class_name=Slow, name="slow").to(">>", "q1", path=str(tmp_path / "q")) \
        .to(class_name=Tag, name="child-step", function="child")
    fn.add_child_function("child", __file__)
    server = fn.to_mock_server(current_function="")
    response = server.run(graphpack.Event({"n": 7}, id="e7"))
    assert response.status_code == 200 and response.body == {"id": "e7"}
    assert stored(tmp_path / "q") == [{"n": 7}]
    server.wait_for_completion()


def test_run_async_waits_for_the_write(tmp_path, disk_full):
    server = root_server("async", tmp_path / "q")
    response = asyncio.run(server.run_async(graphpack.Event({"n": 1})))
    assert response.status_code == 503


@pytest.mark.parametrize("deferred", [True, False])
def test_entry_handler_defers_or_waits(tmp_path, deferred):
    server = root_server("sync", tmp_path / "q", linger=0.2)
    entry._state["server"] = server
    context = Context(trigger=TriggerInfo("http", "http"))
    context.deferred_replies = deferred
    try:
        out = entry.handler(context, NuclioEvent(body={"n": 1}, trigger=TriggerInfo("http", "http"),
                                                 content_type="application/json"))
        if deferred:  # graphpack serve: a future, and the worker takes the next event meanwhile
            assert isinstance(out, Future) and not out.done()
            out = out.result(5)
        else:  # Nuclio's wrapper: the handler returns once the record is durable
            assert stored(tmp_path / "q") == [{"n": 1, "tagged": True}]
        assert out.status_code == 200 and stored(tmp_path / "q") == [{"n": 1, "tagged": True}]
    finally:
        entry._state["server"] = None
        server.wait_for_completion()


def test_deferred_handler_failure_is_503(tmp_path, disk_full):
    server = root_server("async", tmp_path / "q")
    entry._state["server"] = server
    try:
        out = entry.handler(Context(), NuclioEvent(body={"n": 1}, trigger=TriggerInfo("http", "http")))
        reply = out.result(5)
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
        assert set(reply.headers) <= {"Retry-After", "traceparent"}, reply.headers
    finally:
        entry._state["server"] = None
        server.wait_for_completion()


@pytest.mark.parametrize("engine", ENGINES)
def test_queue_faults_are_never_answered_400(engine, tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    server = root_server(engine, tmp_path / "afile" / "q")  # the queue directory cannot be created
    response = server.run(graphpack.Event({"n": 1}))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1", response.body
    assert str(tmp_path / "afile" / "q") in response.body["error"] and response.body["step"] == "q1"
    server.wait_for_completion()
    unusable = root_server(engine, "nosuch://q")  # not the request's fault either: 500 naming the queue
    response = unusable.run(graphpack.Event({"n": 1}))
    assert response.status_code == 500 and "nosuch://q" in response.body["error"], response.body
    unusable.wait_for_completion()
