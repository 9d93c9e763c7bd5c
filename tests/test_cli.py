"""The `graphpack` command: help, version, graph drawing and one-line errors."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

import graphpack
from graphpack.cli import main

PROJECT_CODE = '''
import graphpack

# graphpack: start
class Inc:
    def do(self, x):
        return x + 1
# graphpack: end

project = graphpack.get_or_create_project("demo", "./")
fn = project.set_function("demo.py", name="incr")
graph = fn.set_topology("flow", engine="sync")
graph.to(class_name="Inc", name="inc").to(">>", "q", path="memory://q").to(class_name="Inc", name="more", function="kid").respond()
graph["inc"].error_handler(name="eh", handler="(event)")
fn.add_child_function("kid", "demo.py")
'''


def test_help_and_version():
    runner = CliRunner()
    assert graphpack.__version__ in runner.invoke(main, ["--version"]).output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "graph" in result.output
    proc = subprocess.run([sys.executable, "-m", "graphpack.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage" in proc.stdout
    bare = subprocess.run([sys.executable, "-m", "graphpack.cli"], capture_output=True, text=True)
    assert bare.returncode == 0 and bare.stdout == proc.stdout and bare.stderr == ""


@pytest.mark.parametrize("fmt", ["svg", "png", "dot"])
def test_graph_command_draws_from_a_module_and_from_yaml(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.py").write_text(PROJECT_CODE)
    runner = CliRunner()
    out = tmp_path / f"g.{fmt}"
    result = runner.invoke(main, ["graph", "-f", "demo.py", "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if fmt == "svg":
        assert b"<svg" in data and b"inc" in data and b"stroke-dasharray" in data  # the dashed error edge
    elif fmt == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert b"shape=cds" in data and b"style=dashed" in data


def test_graph_command_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["graph"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: no graphpack.yaml in '.' (run in a project directory or pass -f FILE)"
    (tmp_path / "demo.py").write_text(PROJECT_CODE)
    result = runner.invoke(main, ["graph", "-f", "demo.py", "--function", "nope"])
    assert result.exit_code == 1 and "has no function 'nope'" in result.output
    assert "Traceback" not in result.output


def test_plot_returns_digraph_and_writes_file(tmp_path):
    fn = graphpack.new_function("p")
    fn.add_model("m1", model_path="x")
    dot = fn.spec.graph.plot(str(tmp_path / "r.svg"), rankdir="LR")
    assert "doubleoctagon" in dot.source and "m1" in dot.source
    assert (tmp_path / "r.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(graphpack.GraphpackError, match="unsupported format"):
        fn.plot(str(tmp_path / "r.bmp"))


@pytest.mark.parametrize("code, message", [
    ("import graphpack\nx = (\n", "broken.py:2: syntax error: '(' was never closed"),
    ("import graphpack\nraise RuntimeError('boom')\n", "broken.py:2: the project script failed: RuntimeError: boom"),
])
def test_a_failing_project_script_is_one_line(tmp_path, monkeypatch, code, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.py").write_text(code)
    result = CliRunner().invoke(main, ["graph", "-f", "broken.py"])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


COMMANDS = ["build", "graph", "deploy", "render", "invoke", "status", "logs", "down", "base-image", "serve"]
PROJECT_COMMANDS = ["build", "graph", "deploy", "render", "invoke", "status", "logs", "down"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_an_example_and_one_vocabulary(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"graphpack {command}" in result.output.split("Example:")[1]
    if command in PROJECT_COMMANDS:
        assert "-f, --file" in result.output and "-C, --directory" in result.output


@pytest.mark.parametrize("args, message", [
    (["deploy", "--image"], "error: option '--image' requires an argument"),
    (["deploy", "--bogus"], "error: no such option '--bogus'"),
    (["logs"], "error: missing argument 'FUNCTION'"),
    (["build", "--target", "cloud"], "error: invalid value for '--target': 'cloud' is not one of"),
    (["nope"], "error: no such command 'nope'"),
])
def test_usage_errors_are_one_line_with_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "graphpack.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--help`" in proc.stderr


def test_graph_and_build_accept_a_child_function_and_C(tmp_path):
    (tmp_path / "demo.py").write_text(PROJECT_CODE)
    runner = CliRunner()
    result = runner.invoke(main, ["graph", "-C", str(tmp_path), "-f", "demo.py", "--function", "kid",
                                  "--format", "dot", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info == {"function": "kid", "root": "incr", "format": "dot", "file": str(tmp_path / "kid.dot")}
    assert "(kid)" in (tmp_path / "kid.dot").read_text()
    result = runner.invoke(main, ["build", "-C", str(tmp_path), "-f", "demo.py", "--function", "kid",
                                  "--target", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert [f["function"] for f in json.loads(result.output)["functions"]] == ["kid"]
    assert (tmp_path / "build" / "kid" / "function.yaml").is_file() and not (tmp_path / "build" / "incr").exists()
    result = runner.invoke(main, ["graph", "-C", str(tmp_path), "-f", "demo.py", "--function", "kids"])
    assert result.exit_code == 1
    assert "has no function 'kids' (functions: incr, kid (child of incr))" in result.output


def test_deploy_takes_registry_and_images_for_the_image_targets(tmp_path):
    (tmp_path / "demo.py").write_text(PROJECT_CODE.replace('path="memory://q"', 'path="queues/q"'))
    runner = CliRunner()
    base = ["deploy", "-C", str(tmp_path), "-f", "demo.py", "--dry-run", "--json"]
    result = runner.invoke(main, base + ["--target", "docker", "--image", "kid=registry.example/kid:v2",
                                         "--registry", "127.0.0.1:5999"])
    assert result.exit_code == 0, result.output
    steps = {s["function"]: s["details"] for s in json.loads(result.output)["steps"]}
    assert steps["kid"]["image"] == "registry.example/kid:v2" and not steps["kid"]["build"]
    assert steps["incr"]["image"].startswith("127.0.0.1:5999/demo/incr:") and steps["incr"]["push"] == "127.0.0.1:5999"
    result = runner.invoke(main, base + ["--target", "knative", "--image", "incr=registry.example/incr:v1"])
    plan = json.loads(result.output)
    assert [s["details"]["image"].split(":")[0] for s in plan["steps"]] == ["graphpack.local/demo/kid",
                                                                          "registry.example/incr"]
    assert any("no registry to push the images of kid" in note for note in plan["notes"])
    assert any("resolves an image tag to a digest" in note for note in plan["notes"])
    result = runner.invoke(main, base + ["--image", "kid=registry.example/kid:v2"])
    assert result.exit_code == 1 and "are for the docker, nuclio and knative targets" in result.output
    result = runner.invoke(main, base + ["--target", "nuclio", "--image", "ghost=r/x:1"])
    assert result.exit_code == 1 and "--image ghost=...: no function 'ghost'" in result.output


def test_one_image_name_for_build_image_deploy_and_render(tmp_path):
    """`build --image` tags an image with the digest of the context it wrote; a deploy plan for the
    same target names that very tag (REGISTRY/PROJECT/FUNCTION:DIGEST)."""
    from pathlib import Path

    from graphpack.packager.images.pipeline import context_tag

    (tmp_path / "demo.py").write_text(PROJECT_CODE.replace('path="memory://q"', 'path="queues/q"'))
    runner = CliRunner()
    common = ["-C", str(tmp_path), "-f", "demo.py", "--json"]
    built = json.loads(runner.invoke(main, ["build", "--target", "knative", "-o", "out", *common]).output)
    tags = {item["function"]: context_tag(Path(item["path"])) for item in built["functions"]}
    plan = json.loads(runner.invoke(main, ["deploy", "--target", "knative", "--dry-run", "--registry", "r.test:5000",
                                           *common]).output)
    assert {s["function"]: s["details"]["image"] for s in plan["steps"]} == {
        name: f"r.test:5000/demo/{name}:{tag}" for name, tag in tags.items()}


def test_a_project_script_imports_its_neighbours_like_python_does(tmp_path):
    """`-f project.py` runs the script as `python project.py` would: its directory is on the import path,
    and a second project's module of the same name is its own."""
    from graphpack.source import load_source

    for name, answer in (("one", 1), ("two", 2)):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "helpers.py").write_text(f"ANSWER = {answer}\n")
        (directory / "demo.py").write_text(PROJECT_CODE + "from helpers import ANSWER\nproject.params['answer'] = ANSWER\n")
        assert load_source(directory / "demo.py").params == {"answer": answer}
