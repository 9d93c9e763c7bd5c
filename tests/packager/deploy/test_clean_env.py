"""Built functions run the way their images run, never with the developer's venv: a graph that
uses an S3 queue (moto server), a RemoteStep to a local HTTP server, an ``s3://`` model path, an
error stream and a cron trigger, deployed

- to the local target in clean environments (``python -I``, a fresh venv holding only the
  function's requirements.txt, the build context as the only code), and
- to the docker target as real images,

must answer correctly, feed the child through the queue, fire the cron trigger and report the
child's failure on the error stream. The functions report where they run (sys.prefix, sys.path),
so the test also sees that nothing of the repository or this venv was reachable; each image is
listed from inside (no build-side module, every shipped module imports, no click/jinja2 loaded)."""
from __future__ import annotations

import json
import os
import site
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import graphpack
from graphpack.errors import GraphpackError
from graphpack.packager.deploy import get_deployer
from graphpack.packager.images.baseimage import cache_dir
from graphpack.queues import open_queue
from tests.plugins.net import free_port

ROOT = Path(__file__).resolve().parents[3]

CODE = '''
import json
import sys
import uuid

from graphpack.serving import V2ModelServer


class Scale(V2ModelServer):
    def load(self):
        path, _ = self.get_model(".json")
        with open(path) as handle:
            self.model = json.load(handle)

    def predict(self, request):
        return [x * self.model["factor"] for x in request["inputs"]]


class Record:
    """The child: stores what it got (and where it runs) in S3; fails on big outputs."""

    def __init__(self, context=None, name=None, bucket=None):
        self.bucket = bucket

    def do(self, body):
        import boto3

        if body["outputs"][0] > 100:
            raise ValueError(f"too big: {body['outputs'][0]}")
        seen = {"body": body, "prefix": sys.prefix, "path": sys.path}
        boto3.client("s3").put_object(Bucket=self.bucket, Key=f"seen/{body['outputs'][0]}-{uuid.uuid4().hex}",
                                      Body=json.dumps(seen).encode())
        return body
'''

CREDENTIALS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]


class Remote(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"remote": "ok", "outputs_seen": body.get("outputs")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def remote_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Remote)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/score"
    server.shutdown()
    server.server_close()


def make_project(directory: Path, bucket: str, remote: str, endpoint: str):
    (directory / "code.py").write_text(CODE)
    project = graphpack.get_or_create_project("c" + uuid.uuid4().hex[:6], str(directory))
    fn = project.set_function("code.py", name="shop")
    graph = fn.set_topology("flow", engine="sync")
    graph.to(class_name="Scale", name="scale", model_path=f"s3://{bucket}/models/") \
        .to("$remote", name="remote", url=remote, result_path="remote").respond() \
        .to(">>", "q", path=f"s3://{bucket}/queues/q") \
        .to(class_name="Record", name="record", function="recorder", bucket=bucket)
    fn.add_child_function("recorder", "code.py")
    fn.spec.error_stream = f"s3://{bucket}/queues/errors"
    fn.add_trigger("tick", graphpack.CronTrigger(schedule="*/2 * * * * *", body={"inputs": [1]}))
    fn.with_secrets("env", CREDENTIALS)
    fn.set_env("AWS_ENDPOINT_URL", endpoint)
    fn.set_env("AWS_DEFAULT_REGION", "us-east-1")
    fn.with_http(workers=1, port=free_port())
    return project


def seen(s3_client, bucket: str, want: set[int], timeout: float = 60) -> dict[int, dict]:
    """outputs[0] -> what the child stored, once every value in ``want`` was stored."""
    deadline = time.monotonic() + timeout
    found: dict[int, dict] = {}
    while time.monotonic() < deadline:
        for item in s3_client.list_objects_v2(Bucket=bucket, Prefix="seen/").get("Contents", []):
            value = int(item["Key"].split("/")[1].split("-")[0])
            if value not in found:
                found[value] = json.loads(s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        if want <= set(found):
            return found
        time.sleep(0.3)
    raise AssertionError(f"the child stored {sorted(found)}, expected {sorted(want)}")


def error_records(endpoint: str, bucket: str, timeout: float = 60) -> list[dict]:
    queue = open_queue(f"s3://{bucket}/queues/errors", endpoint_url=endpoint, poll_interval=0.1)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = queue.read(0, "test", 10, timeout=1.0)
            if items:
                return [item.record() for item in items]
        raise AssertionError("nothing reached the error stream")
    finally:
        queue.close()


# run inside an image: import every Python module it ships under graphpack/ and report what it has
IMAGE_PROBE = r'''
import importlib, json, os, sys
root = "/opt/graphpack/function"
files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(os.path.join(root, "graphpack"))
               for f in names if f.endswith(".py"))
errors = {}
for path in files:
    module = path[:-3].replace("/", ".").removesuffix(".__init__")
    try:
        importlib.import_module(module)
    except Exception as exc:
        errors[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"files": files, "errors": errors, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
'''
BUILD_SIDE = ("graphpack/packager/", "graphpack/templates/", "graphpack/cli.py", "graphpack/function.py",
              "graphpack/project.py", "graphpack/source.py", "graphpack/graph/plot.py", "graphpack/observe/")


def check_image(engine, image: str) -> None:
    """The image holds graphpack's runtime only, and every module of it imports there."""
    out = engine.containers.run(image, ["python3", "-c", IMAGE_PROBE], remove=True, network_mode="host")
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert "graphpack/serve.py" in report["files"] and "graphpack/runtime/processor.py" in report["files"]
    assert not [f for f in report["files"] if f.startswith(BUILD_SIDE)], report["files"]
    assert not report["errors"], report["errors"]
    assert not {"click", "jinja2", "graphviz", "docker", "kubernetes"} & set(report["loaded"]), report["loaded"]


def host_paths() -> list[str]:
    """Where this test's own code lives: the repository and this interpreter's site-packages."""
    return [str(ROOT), *site.getsitepackages(), site.getusersitepackages()]


@pytest.mark.parametrize("target", ["local", "docker"])
def test_the_built_functions_answer_outside_the_developers_venv(target, tmp_path, s3_env, s3_server, s3_client, s3_bucket,
                                                                remote_url, request):
    if target == "docker":
        request.getfixturevalue("docker_engine")
    s3_client.put_object(Bucket=s3_bucket, Key="models/model.json", Body=b'{"factor": 3}')
    project = make_project(tmp_path, s3_bucket, remote_url, s3_server)
    options = {"isolated": True} if target == "local" else {}
    deployer = get_deployer(target, str(tmp_path), **options)
    try:
        deployer.apply(deployer.plan(project))
        answer = deployer.invoke("shop", "/", {"inputs": [2]})
        assert answer.ok, (answer.status_code, answer.body)
        assert answer.body["outputs"] == [6] and answer.body["model_name"] == "scale"
        assert answer.body["remote"] == {"remote": "ok", "outputs_seen": [6]}
        failing = deployer.invoke("shop", "/", {"inputs": [50]})  # the child fails on 150
        assert failing.ok and failing.body["outputs"] == [150]
        stored = seen(s3_client, s3_bucket, {6, 3})  # 3: the cron trigger's {"inputs": [1]}
        assert stored[6]["body"]["remote"]["remote"] == "ok"
        errors = error_records(s3_server, s3_bucket)
        assert errors[0]["step"] == "record" and "too big: 150" in errors[0]["error"]
        for record in stored.values():
            reachable = [p for p in record["path"] if any(p.startswith(h) for h in host_paths())]
            assert not reachable, f"the function could reach the developer's code: {reachable}"
        if target == "local":
            venvs = str(cache_dir().parent / "venvs") + os.sep   # the function ran in a cached venv
            assert stored[6]["prefix"].startswith(venvs), (stored[6]["prefix"], venvs)
        else:
            for function in ("shop", "recorder"):
                check_image(request.getfixturevalue("docker_engine"), deployer.status()[function]["image"])
        for function in ("shop", "recorder"):
            assert not any("No module named" in line for line in deployer.logs(function))
    finally:
        try:
            deployer.delete()
        except GraphpackError:
            pass


def test_a_missing_package_is_one_log_line_and_a_failed_health_check(tmp_path, s3_env, s3_bucket):
    """The child reading an S3 queue, run where boto3 is missing (its requirements.txt hand-edited
    down to the processor's): one error line naming boto3 and the queue, /__health answers 503,
    and no retry loop."""
    import httpx

    from graphpack.packager import plan_and_render, write_contexts
    from graphpack.packager.requirements import processor_requirements
    from graphpack.packager.venvs import serve_command

    (tmp_path / "code.py").write_text(CODE)
    fn = graphpack.new_function("shop", "bare", filename=str(tmp_path / "code.py"))
    fn.set_topology("flow", engine="sync").to(">>", "q", path=f"s3://{s3_bucket}/queues/q") \
        .to(class_name="Record", name="record", function="recorder", bucket=s3_bucket)
    fn.add_child_function("recorder", str(tmp_path / "code.py"))
    child = write_contexts(plan_and_render(fn, "bare", "docker"), tmp_path / "build")[1]
    assert "boto3==" in (child / "requirements.txt").read_text()  # what the packager derived
    (child / "requirements.txt").write_text("\n".join(processor_requirements()) + "\n")
    port = free_port()
    env = {**os.environ, "GRAPHPACK_QUEUE_CONSUMER": f"s3://{s3_bucket}/queues/q",
           "GRAPHPACK_CONSUMER_GROUP": "g"}
    proc = subprocess.Popen(serve_command(child, "--port", str(port)), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, health = time.monotonic() + 30, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/__health", timeout=1)
                if health.status_code != 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        time.sleep(1.5)  # a retry loop would log again meanwhile
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    lines = [line for line in output.splitlines() if "boto3" in line]
    assert len(lines) == 1, output
    assert "needs the Python package 'boto3'" in lines[0] and f"s3://{s3_bucket}/queues/q" in lines[0]
    assert "retrying" not in output and "botocore" not in output and "Traceback" not in output, output
    assert health is not None and health.status_code == 503, output  # up, but says why it cannot work
    assert health.json()["status"] == "failed" and "boto3" in health.json()["errors"][0]


def test_a_model_path_without_its_package_stops_the_function_with_one_line(tmp_path):
    """An ``s3://`` model loaded at start where boto3 is missing: the function does not start, and
    says why in one line naming boto3 and the path (no traceback, no wrapped repeats)."""
    from graphpack.packager import plan_and_render, write_contexts
    from graphpack.packager.requirements import processor_requirements
    from graphpack.packager.venvs import serve_command

    (tmp_path / "code.py").write_text(CODE)
    fn = graphpack.new_function("model", "bare", filename=str(tmp_path / "code.py"))
    fn.set_topology("flow", engine="sync").to(class_name="Scale", name="scale", model_path="s3://bucket/m/").respond()
    context = write_contexts(plan_and_render(fn, "bare", "docker"), tmp_path / "build")[0]
    assert "boto3==" in (context / "requirements.txt").read_text()
    (context / "requirements.txt").write_text("\n".join(processor_requirements()) + "\n")
    proc = subprocess.run(serve_command(context, "--port", str(free_port())), capture_output=True, text=True,
                          timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    lines = [line for line in output.splitlines() if "boto3" in line]
    assert len(lines) == 1 and "'s3://bucket/m/' needs the Python package 'boto3'" in lines[0], output
    assert "Traceback" not in output, output
