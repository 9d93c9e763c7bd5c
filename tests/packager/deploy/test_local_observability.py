"""Queue metrics across a local deploy: a root and a child joined by a file queue, real
processes, both scraped over HTTP (issue 18)."""
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import graphpack
from graphpack import GraphpackError

from .test_local import free_port

CODE = '''
class Pre:
    def do(self, body):
        return body
'''

CHILD = '''
import time
from pathlib import Path

class Slow:
    def do(self, body):
        time.sleep(body.get("sleep", 0))
        if body.get("fail"):
            raise ValueError("child refuses")
        return body
'''


@pytest.fixture
def project(tmp_path):
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    project = graphpack.get_or_create_project("obs", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Pre", name="pre").respond().to(">>", "q1", path="", shards=2) \
        .to(class_name="Slow", name="slow", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_http(workers=1, port=free_port())
    yield project
    try:
        project.down(purge=True)
    except GraphpackError:
        pass


def scrape(url: str) -> dict:
    samples = {}
    text = httpx.get(url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples carrying ``labels`` (e.g. over shards)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_pushed_consumed_retried_dead_lettered_and_lag(project):
    project.deploy_function("root")
    deployed = project.deployer().status()
    root, child = deployed["root"]["url"], deployed["child"]["url"]
    sent = [{"n": i, "sleep": 0.05, "fail": i % 10 == 3} for i in range(40)]
    failing = sum(body["fail"] for body in sent)
    with httpx.Client(base_url=root) as client:
        for body in sent:
            assert client.post("/", json=body).status_code == 200
    root_samples = scrape(root)
    assert total(root_samples, "graphpack_queue_records_pushed_total", function="obs-root", queue="q1") == len(sent)
    assert total(root_samples, "graphpack_step_events_total", function="obs-root", step="q1") == len(sent)

    lag_seen = {"graphpack_queue_lag_records": 0.0, "graphpack_queue_lag_seconds": 0.0}
    deadline = time.time() + 30
    while True:  # the child sleeps 50 ms a record: 40 records take two seconds
        samples = scrape(child)
        for name in lag_seen:
            lag_seen[name] = max(lag_seen[name], total(samples, name, function="obs-root-child", queue="q1"))
        consumed = total(samples, "graphpack_queue_records_consumed_total", function="obs-root-child", queue="q1")
        dead = total(samples, "graphpack_queue_records_dead_lettered_total", function="obs-root-child", queue="q1")
        if consumed + dead == len(sent) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert lag_seen["graphpack_queue_lag_records"] > 0 and lag_seen["graphpack_queue_lag_seconds"] > 0
    assert consumed == len(sent) - failing and dead == failing
    assert total(samples, "graphpack_queue_records_retried_total", function="obs-root-child", queue="q1") == 2 * failing
    assert {dict(ls)["shard"] for (n, ls) in samples if n == "graphpack_queue_records_consumed_total"} == {"0", "1"}
    # every attempt ran the step; only the child's step failed, once per attempt
    assert total(samples, "graphpack_step_events_total", function="obs-root-child", step="slow") == len(sent) + 2 * failing
    assert total(samples, "graphpack_step_errors_total", function="obs-root-child", step="slow") == 3 * failing
    assert total(root_samples, "graphpack_step_errors_total", function="obs-root") == 0
    lag = [v for (n, ls), v in samples.items() if n == "graphpack_queue_lag_records"]
    assert lag and all(v == 0 for v in lag)  # caught up on both shards
    assert all(v == 0 for (n, _), v in samples.items() if n == "graphpack_queue_lag_seconds")


TRACED_ROOT = '''
class Pre:
    def __init__(self, context=None):
        self.context = context

    def do(self, body):
        self.context.logger.info(f"root saw {body['n']}")
        return body
'''

TRACED_CHILD = '''
class Check:
    def __init__(self, context=None):
        self.context = context

    def do(self, body):
        self.context.logger.info(f"child saw {body['n']}")
        if body.get("fail"):
            raise ValueError("child refuses")
        return body
'''

TRACE_1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def log_lines(path, text: str, timeout: float = 20.0) -> list[str]:
    deadline = time.time() + timeout
    while True:
        found = [line for line in Path(path).read_text().splitlines() if text in line]
        if found or time.time() > deadline:
            return found
        time.sleep(0.1)


def test_traceparent_crosses_the_queue_into_the_childs_logs_errors_and_dead_letters(tmp_path):
    (tmp_path / "serving.py").write_text(TRACED_ROOT)
    (tmp_path / "child.py").write_text(TRACED_CHILD)
    project = graphpack.get_or_create_project("trace", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path=str(tmp_path / "q1")).to(class_name="Check", name="check", function="child")
    fn.add_child_function("child", "child.py")
    fn.spec.error_stream = str(tmp_path / "errors")
    fn.with_http(workers=1, port=free_port())
    try:
        project.deploy_function("root")
        deployed = project.deployer().status()
        root = deployed["root"]["url"]
        ok = httpx.post(root + "/", json={"n": 1}, headers={"traceparent": TRACE_1})
        bad = httpx.post(root + "/", json={"n": 2, "fail": True}, headers={"traceparent": TRACE_2})
        new = httpx.post(root + "/", json={"n": 3}, headers={"traceparent": "00-nonsense"})
        assert [r.status_code for r in (ok, bad, new)] == [200, 200, 200]
        assert ok.headers["traceparent"] == TRACE_1 and bad.headers["traceparent"] == TRACE_2
        made = new.headers["traceparent"]  # an invalid header is replaced by a new trace
        assert made not in (TRACE_1, TRACE_2, "00-nonsense") and len(made) == 55
        traces = {1: TRACE_1[3:35], 2: TRACE_2[3:35], 3: made[3:35]}

        for n, trace in traces.items():
            (root_line,) = log_lines(deployed["root"]["log"], f"root saw {n}")
            assert f'"trace_id": "{trace}"' in root_line
            child_lines = log_lines(deployed["child"]["log"], f"child saw {n}")
            assert child_lines and all(f'"trace_id": "{trace}"' in line for line in child_lines)
        # the failing record: its attempts and its dead-lettering name the trace in the child's log
        (dead,) = log_lines(deployed["child"]["log"], "dead-lettered")
        assert f"trace_id {traces[2]}" in dead

        from graphpack.queues import open_queue

        with open_queue(str(tmp_path / "q1")) as queue:
            records = [item.record() for item in queue.read(0, "inspect", max_records=10)]
        assert {r["body"]["n"]: r["traceparent"] for r in records} == {1: TRACE_1, 2: TRACE_2, 3: made}
        with open_queue(str(tmp_path / "errors")) as errors:
            failures = [item.record() for item in errors.read(0, "inspect", max_records=10)]
        assert len(failures) == 3 and {f["step"] for f in failures} == {"check"}  # one per attempt
        assert {f["function"] for f in failures} == {"trace/root-child"}  # the child pushed them
        assert {f["traceparent"] for f in failures} == {TRACE_2}
    finally:
        project.down(purge=True)
