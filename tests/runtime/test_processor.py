"""graphpack's processor (`graphpack serve`) with real processes and real HTTP on 127.0.0.1."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.plugins.net import free_port

ENTRY = '''
import json, os, time

def init_context(context):
    context.user_data.calls = 0
    context.user_data.pid = os.getpid()

def handler(context, event):
    context.user_data.calls += 1
    body = event.body
    if isinstance(body, bytes):
        body = body.decode()
    if event.path == "/sleep":
        time.sleep(float(body or 1))
    if event.trigger.kind == "cron":
        with open(os.environ["CRON_LOG"], "a") as f:
            f.write(json.dumps({"body": body, "header": event.get_header("X-Source")}) + "\\n")
    if event.path == "/text":
        return "plain"
    if event.path == "/status":
        return 418, {"teapot": True}
    return {"body": body, "path": event.path, "method": event.method, "pid": context.user_data.pid,
            "query": event.fields}
'''


def make_function(tmp_path, workers=1, triggers=None, timeout_ms=None, entry=ENTRY):
    http = {"kind": "http", "maxWorkers": workers, "attributes": {"maxRequestBodySize": 1000}}
    if timeout_ms:
        http["workerAvailabilityTimeoutMilliseconds"] = timeout_ms
    config = {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction", "metadata": {"name": "demo"},
              "spec": {"runtime": "python:3.11", "handler": "entry:handler",
                       "triggers": {"http": http, **(triggers or {})}}}
    fdir = tmp_path / "fn"
    fdir.mkdir()
    (fdir / "function.yaml").write_text(json.dumps(config))
    (fdir / "entry.py").write_text(entry)
    return fdir


class Served:
    """``graphpack serve DIR`` on a free port (``command``: the module and words before DIR), healthy."""

    def __init__(self, fdir, env=None, args=(), command=("graphpack.cli", "serve"), timeout=20, **popen):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = None
        self.proc = subprocess.Popen([sys.executable, "-m", *command, str(fdir), "--port", str(self.port), *args],
                                     env={**os.environ, **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/__health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("server did not become healthy: " + self.output)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.output is None:
            self.output = self.proc.communicate(timeout=30)[0]
        return self.proc.returncode


@pytest.fixture
def served(tmp_path):
    servers = []

    def start(**kw):
        env, popen = kw.pop("env", None), kw.pop("popen", {})
        server = Served(make_function(tmp_path, **kw), env, **popen)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_http_bodies_status_and_413(served):
    s = served()
    r = httpx.post(s.url + "/a/b?x=1", json={"k": [1, 2]})
    assert r.status_code == 200 and r.json()["body"] == {"k": [1, 2]} and r.json()["query"] == {"x": "1"}
    assert r.json()["path"] == "/a/b" and r.json()["method"] == "POST"
    r = httpx.post(s.url + "/text", content=b"hi")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "plain", "text/plain")
    r = httpx.get(s.url + "/status")
    assert (r.status_code, r.json()) == (418, {"teapot": True})
    r = httpx.post(s.url + "/", content=b"x" * 2000)
    assert r.status_code == 413 and "exceeds the limit of 1000 bytes" in r.text
    assert httpx.get(s.url + "/__health").json()["status"] == "ready"


def test_busy_worker_answers_503_with_retry_after(served):
    s = served(timeout_ms=300)
    assert httpx.post(s.url + "/sleep", content=b"0.05").status_code == 200  # marks events as slow
    results = {}

    def slow():
        results["slow"] = httpx.post(s.url + "/sleep", content=b"1.5", timeout=10).status_code

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    busy = httpx.post(s.url + "/", content=b"x", timeout=10)
    thread.join()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert results["slow"] == 200


def test_workers_run_in_parallel_processes(served):
    s = served(workers=2)
    pids, durations = set(), []

    def call():
        start = time.time()
        r = httpx.post(s.url + "/sleep", content=b"1", timeout=10)
        durations.append(time.time() - start)
        pids.add(r.json()["pid"])

    threads = [threading.Thread(target=call) for _ in range(2)]
    start = time.time()
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(pids) == 2
    assert time.time() - start < 1.9  # two 1 s events at once, not one after the other


def worker_pids(supervisor):
    return sorted(int(p) for p in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split())


def wait_for(condition, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_killed_worker_is_logged_and_replaced_whichever_it_is(served):
    s = served(workers=2)
    pids = wait_for(lambda: len(worker_pids(s.proc.pid)) == 2 and worker_pids(s.proc.pid))
    for victim in list(pids):
        os.kill(victim, signal.SIGKILL)
        pids = wait_for(lambda: (p := worker_pids(s.proc.pid)) and len(p) == 2 and victim not in p and p)
        assert not Path(f"/proc/{victim}").exists()  # reaped, no zombie
        answered = {httpx.post(s.url + "/", json={}, timeout=10).json()["pid"] for _ in range(20)}
        assert answered <= set(pids) and s.proc.poll() is None
        wait_for(lambda: all(httpx.get(s.url + "/__health").status_code == 200 for _ in range(4)))
    assert s.stop() == 0
    for pid in pids:  # the replacements stopped with their supervisor
        assert not Path(f"/proc/{pid}").exists()
    lines = [line for line in s.output.splitlines() if "was killed by signal 9 (SIGKILL)" in line]
    assert len(lines) == 2 and {"worker 0" in line for line in lines} == {True, False}, s.output


def test_accept_errors_back_off_and_log_once_per_interval(served):
    import resource

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (60, 60))

    s = served(popen={"preexec_fn": few_files})
    clients = []
    try:
        for _ in range(120):  # past the worker's descriptor limit: accept() fails with EMFILE
            clients.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        time.sleep(2)
    finally:
        for client in clients:
            client.close()
    assert wait_for(lambda: httpx.get(s.url + "/__health", timeout=5).status_code == 200)
    assert s.stop() == 0
    failures = [line for line in s.output.splitlines() if "accept() failed" in line]
    assert 1 <= len(failures) <= 2 and "Too many open files" in failures[0], s.output[-3000:]
    assert "Traceback" not in s.output


def test_cron_interval_delivers_body_and_headers(served, tmp_path):
    log = tmp_path / "cron.log"
    cron = {"tick": {"kind": "cron", "attributes": {"interval": "200ms",
                                                     "event": {"body": {"op": "retrain"}, "headers": {"X-Source": "cron"}}}}}
    s = served(triggers=cron, env={"CRON_LOG": str(log)})
    deadline = time.time() + 10
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.1)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) >= 2
    assert lines[0] == {"body": '{"op": "retrain"}', "header": "cron"}
    assert s.stop() == 0


def test_sigterm_drains_in_flight_requests(served):
    s = served()
    result = {}

    def slow():
        result["r"] = httpx.post(s.url + "/sleep", content=b"1", timeout=10)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    thread.join()
    assert result["r"].status_code == 200
    assert s.proc.wait(timeout=10) == 0
    s.stop()
    assert "stopped" in s.output


def test_bad_function_dir_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "graphpack.cli", "serve", str(tmp_path)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: cannot read") and "Traceback" not in proc.stderr


def test_workers_drain_and_leave_when_their_supervisor_is_killed(served):
    """No orphan keeps serving the port after a SIGKILL of the supervisor (the deploy's keeper
    then starts a new one on it)."""
    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    s = served(workers=2)
    workers = [int(p) for p in Path(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children").read_text().split()]
    assert len(workers) == 2
    os.kill(s.proc.pid, signal.SIGKILL)
    deadline = time.time() + 15
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", s.port))  # the port is free
    s.stop()
