"""Supervision on the local target, with real processes (issue 13 point 4): a killed supervisor
or worker is replaced on the same port, `status` counts restarts, a redeploy after a crash
keeps the port, and `down` leaves no process and a free port."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from graphpack.packager.deploy.local import pid_alive
from tests.plugins.net import free_port

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux) to list process groups")

CODE = '''
class Tag:
    def __init__(self, context=None, name=None, tag="v1"):
        self.tag = tag
    def do(self, body):
        body["tag"] = self.tag
        return body
'''

PROJECT = '''
import graphpack
project = graphpack.get_or_create_project("kept", ".")
fn = project.set_function("serving.py", name="root")
fn.set_topology("flow", engine="sync").to(class_name="Tag", name="tag", tag={tag!r}).respond()
fn.with_http(workers={workers}, port={port})
'''


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def proc_stat(pid):
    """(state, ppid, pgid) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def live_pids(pred):
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        stat = proc_stat(int(entry.name))
        if stat and stat[0] != "Z" and pred(stat):
            pids.append(int(entry.name))
    return pids


def children(pid):
    return live_pids(lambda stat: stat[1] == pid)


def group(pgid):
    return live_pids(lambda stat: stat[2] == pgid)


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s: {condition}")


class Deployed:
    """A project deployed with the CLI (the deploy process exits, as for a user)."""

    def __init__(self, path: Path, port: int, workers: int = 2) -> None:
        self.path, self.port, self.workers = path, port, workers
        (path / "serving.py").write_text(CODE)
        self.write(tag="v1")

    def write(self, tag):
        (self.path / "project.py").write_text(PROJECT.format(tag=tag, port=self.port, workers=self.workers))

    def cli(self, *args):
        result = subprocess.run([sys.executable, "-m", "graphpack.cli", *args], capture_output=True, text=True,
                                cwd=self.path, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    def deploy(self):
        return self.cli("deploy", "-f", "project.py")

    def status(self):
        return json.loads(self.cli("status", "--json").stdout)["root"]

    def answer(self, n):
        try:
            response = httpx.post(f"http://127.0.0.1:{self.port}/", json={"n": n}, timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def log(self):
        return (self.path / ".graphpack" / "logs" / "root.log").read_text()

    def down_leaves_nothing(self, *pids):
        status = self.status()
        keeper = status["keeper"]
        pids = {keeper, status["pid"], *children(status["pid"]), *pids}
        self.cli("down")
        assert group(keeper) == []
        assert not [pid for pid in pids if pid_alive(pid, ours=True)]
        assert port_free(self.port)


@pytest.fixture
def deployed(tmp_path, request):
    project = Deployed(tmp_path, free_port(), getattr(request, "param", 2))
    yield project
    subprocess.run([sys.executable, "-m", "graphpack.cli", "down"], cwd=tmp_path, capture_output=True, timeout=120)


@pytest.mark.parametrize("deployed", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_sigkill_of_the_supervisor_restarts_it_on_the_same_port(deployed):
    deployed.deploy()
    before = deployed.status()
    supervisor, keeper = before["pid"], before["keeper"]
    workers = children(supervisor)  # with 1 worker, the supervisor serves itself
    assert len(workers) == (deployed.workers if deployed.workers > 1 else 0)
    assert proc_stat(supervisor)[2] == keeper  # one process group per function, led by its keeper
    assert before["restarts"] == 0 and before["state"] == "running" and before["supervised"]
    assert deployed.answer(1) == {"n": 1, "tag": "v1"}

    os.kill(supervisor, signal.SIGKILL)
    killed = time.monotonic()
    after = wait_for(lambda: (s := deployed.status())["state"] == "running" and s["pid"] != supervisor and s)
    assert wait_for(lambda: deployed.answer(2)) == {"n": 2, "tag": "v1"}
    took = time.monotonic() - killed
    assert took < 10, f"answered again only after {took:.1f}s"
    assert after["restarts"] == 1 and after["port"] == deployed.port and after["keeper"] == keeper
    assert after["last_exit"] == f"supervisor (pid {supervisor}) was killed by SIGKILL"
    assert f"supervisor (pid {supervisor}) was killed by SIGKILL; restart 1 on the same port" in deployed.log()
    wait_for(lambda: not [w for w in workers if pid_alive(w, ours=True)])  # the old workers drained and left
    table = deployed.cli("status").stdout.splitlines()
    assert table[1].split()[-1] == "1"  # the RESTARTS column
    deployed.down_leaves_nothing(supervisor, *workers)


def test_sigkill_of_a_worker_keeps_the_function_answering(deployed):
    deployed.deploy()
    before = deployed.status()
    worker = children(before["pid"])[0]
    os.kill(worker, signal.SIGKILL)
    answers = [wait_for(lambda i=i: deployed.answer(i)) for i in range(20)]
    assert answers == [{"n": i, "tag": "v1"} for i in range(20)]
    after = wait_for(lambda: (s := deployed.status())["worker_restarts"] == 1 and s)
    assert after["port"] == deployed.port and after["pid"] == before["pid"] and after["restarts"] == 0
    assert f"(pid {worker}) was killed by signal 9 (SIGKILL): starting a new worker" in deployed.log()
    wait_for(lambda: len(children(before["pid"])) == 2)  # replaced
    assert deployed.cli("status").stdout.splitlines()[1].split()[-2:] == ["0", "+1w"]
    deployed.down_leaves_nothing(worker)


def test_redeploy_after_crashes_keeps_the_port(deployed):
    deployed.deploy()
    first = deployed.status()

    # the supervisor dies and is restarted; then a changed project is deployed: same port
    os.kill(first["pid"], signal.SIGKILL)
    wait_for(lambda: deployed.status()["restarts"] == 1 and deployed.status()["state"] == "running")
    deployed.write(tag="v2")
    deployed.deploy()
    second = deployed.status()
    assert second["port"] == deployed.port and second["keeper"] != first["keeper"] and second["restarts"] == 0
    assert wait_for(lambda: deployed.answer(1)) == {"n": 1, "tag": "v2"}
    assert not pid_alive(first["keeper"], ours=True)

    # the keeper dies, then the supervisor (nothing restarts it; its workers are orphans): a redeploy
    # stops what is left of the old process group and starts on the same port again
    workers = children(second["pid"])
    os.kill(second["keeper"], signal.SIGKILL)
    gone = wait_for(lambda: (s := deployed.status())["supervised"] is False and s)
    assert gone["state"] == "running" and gone["pid"] == second["pid"]  # serving, but unsupervised
    plan = json.loads(deployed.cli("deploy", "-f", "project.py", "--dry-run", "--json").stdout)
    assert [(s["action"], s["reason"]) for s in plan["steps"]] == [
        ("start", "its keeper is gone (restarted with a new one)")]
    os.kill(second["pid"], signal.SIGKILL)
    deployed.deploy()
    third = deployed.status()
    assert third["port"] == deployed.port and third["supervised"] and third["state"] == "running"
    assert wait_for(lambda: deployed.answer(2)) == {"n": 2, "tag": "v2"}
    assert not [w for w in workers if pid_alive(w, ours=True)]
    deployed.down_leaves_nothing(second["pid"], *workers)


def test_a_crash_on_start_fails_the_deploy_and_leaves_nothing(deployed):
    (deployed.path / "serving.py").write_text(CODE + '''
raise RuntimeError("cannot start: missing model file")
''')
    result = subprocess.run([sys.executable, "-m", "graphpack.cli", "deploy", "-f", "project.py"],
                            capture_output=True, text=True, cwd=deployed.path, timeout=120)
    assert result.returncode == 1 and "Traceback (most recent call last)" not in result.stderr.splitlines()[0]
    assert "function 'root' exited on start; last log lines:" in result.stderr
    assert "cannot start: missing model file" in result.stderr
    assert "before it was ready; not restarting" in result.stderr
    assert not [pid for pid in live_pids(lambda stat: True) if str(deployed.path).encode() in cmdline(pid)]
    assert port_free(deployed.port) and json.loads(deployed.cli("status", "--json").stdout) == {}
