"""The keeper alone, running a stand-in supervisor: restarts with backoff, gives up only on a
failed first start, stops on SIGTERM (issue 13 point 4)."""
import json
import os
import signal
import subprocess
import sys
import time

from graphpack.packager.deploy import keeper
from graphpack.packager.deploy.local import KEEPER
from tests.plugins.net import free_port

# A stand-in for `graphpack serve`: answers every GET with 200 on the port, exits ``code``
# after ``seconds`` (never starts listening when ``seconds`` is negative).
STAND_IN = '''
import http.server, os, sys, threading, time
port, seconds, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
if seconds < 0:
    print("cannot start: bad config", file=sys.stderr, flush=True)
    os._exit(code)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(seconds)
os._exit(code)
'''


def read_status(tmp_path):
    path = tmp_path / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    assert condition()


def start_keeper(tmp_path, seconds, code):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    port = free_port()
    log = open(tmp_path / "keeper.log", "wb")
    command = [sys.executable, "-P", KEEPER, str(tmp_path / "run.json"), f"http://127.0.0.1:{port}/__health",
               "--", sys.executable, str(script), str(port), str(seconds), str(code)]
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return process


def test_backoff_grows_to_a_ceiling():
    assert [keeper.backoff(n) for n in range(9)] == [0.1, 0.5, 1, 2, 4, 8, 16, 30, 30]


def test_describe_exit():
    assert keeper.describe_exit(signal.SIGKILL) == "was killed by SIGKILL"
    assert keeper.describe_exit(3 << 8) == "exited with code 3"


def test_a_supervisor_that_keeps_dying_is_restarted_with_backoff(tmp_path):
    process = start_keeper(tmp_path, seconds=0.2, code=3)
    try:
        wait_for(lambda: read_status(tmp_path).get("restarts", 0) >= 3)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    log = (tmp_path / "keeper.log").read_text()
    assert "exited with code 3; restart 1 on the same port in 0.5s" in log
    assert "restart 2 on the same port in 1s" in log and "restart 3 on the same port in 2s" in log
    status = read_status(tmp_path)
    assert status["state"] == "stopped" and status["restarts"] >= 3 and status["pid"] is None


def test_a_failed_first_start_is_not_restarted(tmp_path):
    process = start_keeper(tmp_path, seconds=-1, code=4)
    assert process.wait(timeout=20) == 1
    log = (tmp_path / "keeper.log").read_text()
    assert "cannot start: bad config" in log
    assert "exited with code 4 before it was ready; not restarting" in log
    status = read_status(tmp_path)
    assert status["state"] == "failed" and status["restarts"] == 0


def test_sigterm_stops_the_supervisor_and_the_keeper(tmp_path):
    process = start_keeper(tmp_path, seconds=60, code=0)
    wait_for(lambda: read_status(tmp_path).get("state") == "running")
    child = read_status(tmp_path)["pid"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    try:
        os.kill(child, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the supervisor (pid {child}) outlived its keeper")
    assert read_status(tmp_path)["state"] == "stopped"
