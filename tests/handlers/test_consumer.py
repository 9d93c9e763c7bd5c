"""A child whose queue Nuclio has no trigger for: init_context starts graphpack's own consumer."""
from __future__ import annotations

import sys
import time

import pytest

import graphpack
from graphpack.handlers import entry
from graphpack.queues import open_queue
from graphpack.queues import record as wire
from graphpack.runtime.event import Event

from .nuclio_harness import make_context

CODE = '''
SEEN = []


class Pre:
    def do(self, body):
        return body


class Enrich:
    def __init__(self, context, name=None):
        self.context = context

    def do(self, body):
        SEEN.append((self.context.current_function, body))
        return body
'''


def child_spec(queue_url: str) -> dict:
    fn = graphpack.new_function("root", project="proj")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Pre", name="pre").to(">>", "q1", path=queue_url) \
         .to(class_name="Enrich", name="enrich", function="enricher")
    fn.add_child_function("enricher")
    fn.spec.parameters = {"p": 1}
    return fn.serving_spec(current_function="enricher")


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def run_child(function_dir, monkeypatch, url: str) -> list:
    directory, module = function_dir(child_spec(url), CODE)
    monkeypatch.setenv("GRAPHPACK_QUEUE_CONSUMER", url)
    monkeypatch.setenv("GRAPHPACK_CONSUMER_GROUP", "proj-root-enricher")
    context, _ = make_context()
    entry.init_context(context, modules=[module], spec_dir=str(directory))
    queue = open_queue(url)
    try:
        queue.push([wire.encode(wire.wrap(Event({"n": i}, f"id-{i}"))) for i in range(3)])
    finally:
        queue.close()
    seen = sys.modules[module].SEEN
    wait_for(lambda: len(seen) == 3)
    return seen


def test_file_queue_consumer(function_dir, monkeypatch, tmp_path):
    seen = run_child(function_dir, monkeypatch, str(tmp_path / "queues" / "q1"))
    assert sorted(body["n"] for _, body in seen) == [0, 1, 2]
    assert {fn for fn, _ in seen} == {"enricher"}
    entry.shutdown(timeout=5)
    assert entry._state["consumers"] == []


def test_s3_queue_consumer(function_dir, monkeypatch, s3_env, s3_bucket):
    seen = run_child(function_dir, monkeypatch, f"s3://{s3_bucket}/queues/q1")
    assert sorted(body["n"] for _, body in seen) == [0, 1, 2]


def test_one_consumer_per_process(function_dir, monkeypatch, tmp_path):
    url = str(tmp_path / "q")
    directory, module = function_dir(child_spec(url), CODE)
    monkeypatch.setenv("GRAPHPACK_QUEUE_CONSUMER", url)
    for worker in range(3):
        context, _ = make_context(worker_id=worker)
        entry.init_context(context, modules=[module], spec_dir=str(directory))
    assert len(entry._state["consumers"]) == 1
    assert entry._state["consumers"][0].group == "graphpack"


@pytest.fixture(autouse=True)
def _stop_consumers():
    yield
    entry.shutdown(timeout=5)
