"""The local target with real processes and real HTTP on 127.0.0.1 (issue: local-deploy)."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import graphpack
from graphpack import GraphpackError
from graphpack.packager.deploy import check_deployer, get_deployer
from graphpack.packager.deploy.local import pid_alive
from tests.plugins.net import free_port

CODE = '''
import json, os

class Pre:
    def __init__(self, context=None, name=None, tag="v1"):
        self.tag = tag
    def do(self, body):
        if isinstance(body, dict):
            body["tag"] = self.tag
        return body

class Crash:
    def __init__(self, context=None, name=None):
        raise RuntimeError("cannot start: missing model file")
    def do(self, body):
        return body
'''

CHILD = '''
import json, os

class Writer:
    def do(self, body):
        with open(os.path.join(os.environ["OUT_DIR"], "child.jsonl"), "a") as f:
            f.write(json.dumps(body) + "\\n")
        return body

class CronWriter:
    def do(self, body):
        with open(os.path.join(os.environ["OUT_DIR"], "cron.jsonl"), "a") as f:
            f.write(json.dumps(body) + "\\n")
        return body
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    project = graphpack.get_or_create_project("demo", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Pre", name="pre").respond().to(">>", "q1", path="") \
        .to(class_name="Writer", name="write", function="child")
    fn.add_child_function("child", "child.py")
    fn.with_http(workers=1, port=free_port())
    yield project
    try:
        project.down(purge=True)
    except GraphpackError:
        pass


def lines(path, count, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_contract_root_and_child_over_the_default_queue(project, tmp_path):
    deployer = get_deployer("local", project.context)
    seen = []
    check_deployer(deployer, project, "root", "/", {"n": 1}, {"n": 1, "tag": "v1"},
                   after_invoke=lambda: seen.extend(lines(tmp_path / "child.jsonl", 1)))
    assert seen == [{"n": 1, "tag": "v1"}]
    assert (tmp_path / ".graphpack" / "queues").is_dir()


def test_deploy_invoke_update_in_place_and_down(project, tmp_path):
    status = project.deploy_function("root")
    assert set(status.outputs) == {"root", "child"} and status.url.startswith("http://127.0.0.1:")
    assert status.function.invoke("/", {"a": 1}) == {"a": 1, "tag": "v1"}
    assert project.invoke("root", "/", {"a": 2}) == {"a": 2, "tag": "v1"}
    assert [r["a"] for r in lines(tmp_path / "child.jsonl", 2)] == [1, 2]
    pids = {name: info["pid"] for name, info in project.deployer().status().items()}

    # a second deploy of the same project changes nothing
    assert not project.deployer().plan(project).changes

    # changing only the child's code restarts only the child
    (tmp_path / "child.py").write_text(CHILD.replace("child.jsonl", "child2.jsonl"))
    plan = project.deployer().plan(project)
    assert [(s.action, s.function) for s in plan.steps] == [("restart", "child"), ("keep", "root")]
    project.deploy_function("root")
    after = {name: info["pid"] for name, info in project.deployer().status().items()}
    assert after["root"] == pids["root"] and after["child"] != pids["child"]
    assert not pid_alive(pids["child"])
    project.invoke("root", "/", {"a": 3})
    assert [r["a"] for r in lines(tmp_path / "child2.jsonl", 1)] == [3]

    removed = project.down()
    assert sorted(removed) == ["child", "root"]
    assert not any(pid_alive(pid) for pid in after.values())
    assert any((tmp_path / ".graphpack" / "queues").iterdir())  # queued data kept without purge


def test_dry_run_changes_nothing(project, tmp_path):
    result = subprocess.run([sys.executable, "-m", "graphpack.cli", "deploy", "-f", str(tmp_path / "serving.py"),
                             "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0  # serving.py defines no project: a one-line error
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    project.save()
    result = subprocess.run([sys.executable, "-m", "graphpack.cli", "deploy", "--dry-run", "--json"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [(s["action"], s["function"]) for s in plan["steps"]] == [("start", "child"), ("start", "root")]
    assert not (tmp_path / ".graphpack" / "state.json").exists()
    assert not (tmp_path / ".graphpack" / "build").exists()


def test_cli_invoke_status_logs_and_bad_json(project, tmp_path):
    project.save()
    run = lambda *args: subprocess.run([sys.executable, "-m", "graphpack.cli", *args], capture_output=True,
                                       text=True, cwd=tmp_path, timeout=120)
    deployed = run("deploy")
    assert deployed.returncode == 0, deployed.stderr
    ok = run("invoke", "root", "/", "-d", '{"k": "v"}')
    assert ok.returncode == 0 and json.loads(ok.stdout.strip().splitlines()[-1]) == {"k": "v", "tag": "v1"}
    bad = run("invoke", "root", "/", "-d", "{not json", "-H", "Content-Type: application/json")
    assert bad.returncode == 1 and "answered 400" in bad.stderr and "not valid JSON" in bad.stderr
    again = run("invoke", "root", "/", "-d", "@" + str(tmp_path / "missing.json"))
    assert again.returncode == 1 and "does not exist" in again.stderr
    # a text body cannot cross the JSON queue: an error naming the queue (before: 200, and lost)
    text = run("invoke", "root", "/", "-d", '"still up"')
    assert text.returncode == 1 and "answered 500" in text.stderr and "queue" in text.stderr, text.stderr
    assert run("invoke", "root", "/", "-d", '{"still": "up"}').returncode == 0
    unknown = run("invoke", "nope")
    assert unknown.returncode == 1 and "function 'nope' is not deployed (deployed: child, root)" in unknown.stderr
    status = json.loads(run("status", "--json").stdout)
    assert {n: s["state"] for n, s in status.items()} == {"child": "running", "root": "running"}
    table = run("status").stdout
    assert table.splitlines()[0].split() == ["FUNCTION", "STATE", "URL", "PID", "RESTARTS"]
    logs = run("logs", "child").stdout
    assert "consuming queue" in logs and "ready" in logs
    down = run("down", "--purge")
    assert down.returncode == 0 and "stopped 2 function(s)" in down.stdout
    assert not (tmp_path / ".graphpack" / "queues").exists()
    assert not any(pid_alive(s["pid"]) for s in status.values())


def test_crash_on_start_fails_with_log_lines_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "serving.py").write_text(CODE)
    project = graphpack.get_or_create_project("crashy", str(tmp_path))
    fn = project.set_function("serving.py", name="crashy")
    fn.set_topology("flow", engine="sync").to(class_name="Crash", name="boom").respond()
    fn.with_http(port=free_port())
    with pytest.raises(GraphpackError) as info:
        project.deploy_function("crashy")
    message = str(info.value)
    assert "function 'crashy' exited on start" in message and "cannot start: missing model file" in message
    assert project.deployer().status() == {}


def test_port_in_use_picks_another_and_says_so(project):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    project.get_function("root").with_http(workers=1, port=port)
    messages = []
    try:
        status = project.deploy_function("root", progress=messages.append)
    finally:
        busy.close()
    assert any(f"port {port} is in use: root gets port" in m for m in messages)
    assert not status.url.endswith(f":{port}")
    assert project.invoke("root", "/", {"x": 1}) == {"x": 1, "tag": "v1"}


def test_deploy_reports_while_it_waits_for_health(project, monkeypatch):
    from graphpack.packager.deploy import local

    monkeypatch.setattr(local, "HEALTH_REPORT", 0)  # a line on every poll instead of every 5 s
    messages = []
    project.deploy_function("root", progress=messages.append)
    waiting = [m for m in messages if m.startswith("still waiting for ")]
    assert any(m.startswith("still waiting for child to answer http://127.0.0.1:") and m.endswith(" s")
               for m in waiting), messages
    assert messages.index(waiting[0]) < messages.index(next(m for m in messages if m.startswith("child is ready")))


def test_cron_trigger_fires_with_its_body(tmp_path, monkeypatch):
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    project = graphpack.get_or_create_project("crony", str(tmp_path))
    fn = project.set_function("child.py", name="ticker")
    fn.set_topology("flow", engine="sync").to(class_name="CronWriter", name="w").respond()
    fn.with_http(port=free_port())
    fn.add_trigger("tick", graphpack.CronTrigger(interval="300ms", body={"op": "retrain"}))
    project.deploy_function("ticker")
    try:
        assert lines(tmp_path / "cron.jsonl", 2)[:2] == [{"op": "retrain"}, {"op": "retrain"}]
    finally:
        project.down()


def test_sigterm_drain_loses_nothing(project, tmp_path):
    project.deploy_function("root")
    for i in range(60):
        project.invoke("root", "/", {"i": i})
    project.down()  # SIGTERM both: the root stops first, the child drains and commits
    project.deploy_function("root")  # the child resumes from its checkpoint
    seen = {r["i"] for r in lines(tmp_path / "child.jsonl", 60)}
    assert seen == set(range(60))


def test_unreachable_queue_fails_at_deploy_time(tmp_path, monkeypatch):
    (tmp_path / "serving.py").write_text(CODE)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens
    project = graphpack.get_or_create_project("s3demo", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Pre", name="pre").respond() \
        .to(">>", "q1", path="s3://no-such-bucket/q1").to(class_name="Writer", name="write", function="child")
    fn.add_child_function("child", "child.py")
    with pytest.raises(GraphpackError, match=r"child 'child': queue 's3://no-such-bucket/q1'") as info:
        project.deployer().plan(project)
    assert str(info.value).count("s3://no-such-bucket/q1") == 1, str(info.value)  # said once
    assert project.deployer().status() == {}


def test_a_killed_child_comes_back_with_deploy_function_and_logs_outlive_down(project, tmp_path):
    project.save()
    run = lambda *args: subprocess.run([sys.executable, "-m", "graphpack.cli", *args, "-C", str(tmp_path)],
                                       capture_output=True, text=True, timeout=120)
    assert run("deploy").returncode == 0
    status = json.loads(run("status", "--json").stdout)
    os.killpg(status["child"]["keeper"], 9)  # its whole process group, keeper included: nothing restarts it
    deadline = time.time() + 10
    while pid_alive(status["child"]["pid"]) and time.time() < deadline:
        time.sleep(0.05)
    plan = json.loads(run("deploy", "--function", "child", "--dry-run", "--json").stdout)
    assert [(s["action"], s["function"], s["reason"]) for s in plan["steps"]] == [("start", "child", "not running")]
    again = run("deploy", "--function", "child")
    assert again.returncode == 0, again.stderr
    after = json.loads(run("status", "--json").stdout)
    assert after["child"]["state"] == "running" and after["child"]["pid"] != status["child"]["pid"]
    assert after["root"]["pid"] == status["root"]["pid"]  # the root was left alone
    answer = json.loads(run("invoke", "root", "/", "-d", '{"b": 1}', "--json").stdout)
    assert answer["status"] == 200 and answer["body"] == {"b": 1, "tag": "v1"}
    assert {"b": 1, "tag": "v1"} in lines(tmp_path / "child.jsonl", 1)
    assert json.loads(run("down", "--json").stdout) == {"stopped": ["root", "child"], "purged": False}
    logs = run("logs", "child")
    assert logs.returncode == 0 and "consuming queue" in logs.stdout  # the log outlives down
    first = json.loads(run("logs", "child", "--json").stdout.splitlines()[0])
    assert first["function"] == "child" and first["line"].startswith("--- graphpack deploy: starting child")
    assert run("down", "--purge").returncode == 0
    gone = run("logs", "child")
    assert gone.returncode == 1 and gone.stderr.startswith("error: function 'child' is not deployed")
    assert not (tmp_path / ".graphpack" / "logs").exists()


def test_a_relative_error_stream_is_the_project_directorys_whatever_the_working_directory(
        tmp_path, monkeypatch):
    """Found by the ui work: the deploy-time check opened a relative error stream against the
    CLI's working directory while the functions opened it against the project directory."""
    import httpx

    from graphpack.queues import open_queue

    (tmp_path / "serving.py").write_text(CODE + '''
class Fail:
    def do(self, body):
        raise ValueError("refused")
''')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    project = graphpack.get_or_create_project("errs", str(tmp_path))
    fn = project.set_function("serving.py", name="root")
    fn.set_topology("flow", engine="sync").to(class_name="Fail", name="fail")
    fn.spec.error_stream = "errors"
    fn.with_http(workers=1, port=free_port())
    try:
        project.deploy_function("root")
        answer = httpx.post(project.deployer().status()["root"]["url"] + "/", json={"n": 1})
        assert answer.status_code == 500
        assert not (elsewhere / "errors").exists()
        with open_queue(str(tmp_path / "errors")) as errors:
            deadline = time.time() + 10
            while not (failures := [i.record() for i in errors.read(0, "inspect", max_records=10)]) \
                    and time.time() < deadline:
                time.sleep(0.05)
        assert [f["step"] for f in failures] == ["fail"]
    finally:
        project.down(purge=True)
