"""Bad input: one line naming the function and the field, exit 1, nothing half-written."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import DESIGN, read_tree, run_build, write_project

FLOW = '''
fn = project.set_function("serving.py", name="api")
graph = fn.set_topology("flow", engine="sync")
graph.to(class_name="Echo", name="first")
'''

CASES = {
    "unknown child": (
        FLOW + 'graph.add_step("Echo", name="second", after="first", function="ghost")\n',
        ["function 'api'", "field 'function'", "'ghost'"]),
    "queue without a path for a remote target": (
        FLOW + 'graph.add_step(">>", "q", path="", after="first")\n'
               'graph.add_step("Echo", name="second", after="q", function="child")\n'
               'fn.add_child_function("child")\n',
        ["function 'api': child 'child'", "queue 'q'", "field 'path'"]),
    "unsupported trigger attribute": (
        FLOW + 'fn.add_trigger("web", {"kind": "http", "attributes": {"maxBodySizeTypo": 10}})\n',
        ["function 'api'", "trigger 'web'", "field attributes.maxBodySizeTypo"]),
    "unsupported trigger field": (
        FLOW + 'fn.add_trigger("web", {"kind": "http", "workers": 2})\n',
        ["function 'api'", "trigger 'web'", "field workers"]),
    "unknown trigger kind": (
        FLOW + 'fn.add_trigger("bucket", {"kind": "s3", "attributes": {}})\n',
        ["function 'api'", "trigger 'bucket'", "field kind"]),
    "invalid cron schedule": (
        FLOW + 'fn.add_trigger("nightly", {"kind": "cron", "attributes": {"schedule": "61 * * *"}})\n',
        ["function 'api'", "trigger 'nightly'", "field attributes.schedule"]),
    "invalid cron interval": (
        FLOW + 'fn.add_trigger("tick", {"kind": "cron", "attributes": {"interval": "often"}})\n',
        ["function 'api'", "trigger 'tick'", "field attributes.interval"]),
    "missing child code file": (
        FLOW + 'graph.add_step(">>", "q", path="s3://b/q", after="first")\n'
               'graph.add_step("Echo", name="second", after="q", function="child")\n'
               'fn.add_child_function("child", "./missing_child.py")\n',
        ["function 'api': child 'child'", "field url", "missing_child.py"]),
    "invalid function name": (
        FLOW.replace('name="api"', 'name="api!"'),
        ["function 'api!'", "field metadata.name", "DNS-1123"]),
    "inline secrets": (
        FLOW + 'fn.with_secrets("inline", {"TOKEN": "abc"})\n',
        ["function 'api'", "field spec.secret_sources"]),
    "relative secrets file": (
        FLOW + 'fn.with_secrets("file", "secrets.env")\n',
        ["function 'api'", "field spec.secret_sources", "absolute path"]),
    "bad resources": (
        FLOW + 'fn.spec.resources = {"cpu": "1"}\n',
        ["function 'api'", "field spec.resources"]),
    "min above max replicas": (
        FLOW + 'fn.spec.min_replicas = 3\nfn.spec.max_replicas = 1\n',
        ["function 'api'", "field spec.min_replicas"]),
    "v3io consumer with autoscaling": (
        FLOW + 'graph.add_step(">>", "q", path="v3io://users/q", after="first")\n'
               'graph.add_step("Echo", name="second", after="q", function="child")\n'
               'fn.add_child_function("child")\nfn.spec.min_replicas = 1\nfn.spec.max_replicas = 4\n',
        ["function 'api': child 'child'", "field spec.min_replicas"]),
    "memory queue between functions": (
        FLOW + 'graph.add_step(">>", "q", path="memory://q", after="first")\n'
               'graph.add_step("Echo", name="second", after="q", function="child")\n'
               'fn.add_child_function("child")\n',
        ["function 'api': child 'child'", "queue 'q'", "field 'path'"]),
    "parameter that is not JSON": (
        FLOW + 'fn.spec.parameters = {"threshold": object()}\n',
        ["function 'api'", "field spec.parameters['threshold'] is a object, which is not JSON"]),
    "class args that are not JSON": (
        FLOW + 'graph.add_step("Echo", name="second", after="first", when={1, 2})\n',
        ["function 'api'", "step 'second': field class_args['when'] is a set"]),
    "duplicate step name": (
        FLOW + 'graph["first"].to(class_name="Echo", name="first")\n',
        ["project.py:", "step 'first': field 'name'", "step names must be unique"]),
    "empty flow": (
        'fn = project.set_function("serving.py", name="api")\nfn.set_topology("flow")\n',
        ["function 'api'", "field 'steps' is empty"]),
    "child that runs nothing": (
        FLOW + 'fn.add_child_function("idle")\n',
        ["function 'api': child 'idle'"]),
}


def check_failure(result, out: Path, expected: list[str]) -> None:
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(tmp_path, case):
    body, expected = CASES[case]
    source = write_project(tmp_path / "src", body)
    out = tmp_path / "out"
    check_failure(run_build("-f", str(source), "-o", str(out)), out, expected)
    assert not out.exists()


def test_failed_build_leaves_an_earlier_build_untouched(tmp_path):
    good = write_project(tmp_path / "src", FLOW)
    out = tmp_path / "out"
    assert run_build("-f", str(good), "-o", str(out)).exit_code == 0
    before = read_tree(out)
    bad = write_project(tmp_path / "src", CASES["invalid cron schedule"][0])
    check_failure(run_build("-f", str(bad), "-o", str(out)), out, ["trigger 'nightly'"])
    assert read_tree(out) == before
    assert [p.name for p in out.iterdir()] == ["api"]


def test_missing_code_file_in_graphpack_yaml(tmp_path):
    src = tmp_path / "proj"
    src.mkdir()
    fn = {"kind": "serving", "metadata": {"name": "api"},
          "spec": {"filename": "gone.py", "graph": {"kind": "router", "routes": {
              "m": {"kind": "task", "class_name": "Model", "class_args": {"model_path": "x"}}}}}}
    (src / "graphpack.yaml").write_text(yaml.safe_dump(
        {"kind": "project", "metadata": {"name": "shop"}, "spec": {"functions": {"api": fn}}}))
    out = tmp_path / "out"
    check_failure(run_build("-f", str(src), "-o", str(out)), out,
                  ["function 'api'", "field spec.filename", "gone.py"])
    assert not out.exists()


def test_invalid_cron_in_the_trigger_object_fails_when_the_project_loads(tmp_path):
    source = write_project(tmp_path / "src", FLOW + 'fn.add_trigger("n", graphpack.CronTrigger(schedule="every day"))\n')
    out = tmp_path / "out"
    check_failure(run_build("-f", str(source), "-o", str(out)), out, ["invalid cron schedule", "'every day'"])


def test_a_secret_value_copied_into_the_build_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "tok-5f3a9")
    body = FLOW + 'fn.with_secrets("env", ["API_TOKEN"])\nfn.spec.parameters = {"auth": {"token": "tok-5f3a9"}}\n'
    source = write_project(tmp_path / "src", body)
    out = tmp_path / "out"
    check_failure(run_build("-f", str(source), "-o", str(out)), out,
                  ["function 'api'", "field spec.parameters['auth']['token'] holds the value of secret $API_TOKEN",
                   "with_secrets"])
    assert not out.exists()
    monkeypatch.setenv("API_TOKEN", "another-value")  # the same parameter is fine when it is not the secret
    assert run_build("-f", str(source), "-o", str(out)).exit_code == 0
    assert "tok-5f3a9" in (out / "api" / "spec.json").read_text()


def test_a_syntax_error_names_the_line_of_the_file_not_of_the_marked_code(tmp_path):
    """The code between the markers keeps the file's line numbers (in build errors and tracebacks)."""
    src = tmp_path / "proj"
    src.mkdir()
    code = '"""Docs."""\nimport os\n\n\n# graphpack: start\nclass Echo:\n    def do(self, x):\n        return x\n\n' \
           'class Broken(:\n    pass\n# graphpack: end\n\nprint("training code outside the markers")\n'
    (src / "serving.py").write_text(code)
    (src / "project.py").write_text('import graphpack\nproject = graphpack.get_or_create_project("shop", "./")\n'
                                    'fn = project.set_function("serving.py", name="api")\n'
                                    'fn.set_topology("flow").to(class_name="Echo", name="first")\n')
    out = tmp_path / "out"
    check_failure(run_build("-f", str(src / "project.py"), "-o", str(out)), out,
                  ["function 'api'", "serving.py", "syntax error on line 10"])
    (src / "serving.py").write_text(code.replace("class Broken(:", "class Broken:"))
    assert run_build("-f", str(src / "project.py"), "-o", str(out)).exit_code == 0
    built = (out / "api" / "serving.py").read_text().splitlines()
    assert built[5] == "class Echo:" and built[9] == "class Broken:"  # same line numbers as the file
    assert "training code" not in "\n".join(built) and "import os" not in "\n".join(built)


def test_unknown_function_name(tmp_path):
    source = write_project(tmp_path / "src", FLOW)
    out = tmp_path / "out"
    check_failure(run_build("-f", str(source), "-o", str(out), "--function", "nope"), out,
                  ["has no function 'nope'"])


def test_queue_without_a_path_is_fine_for_the_local_target(tmp_path):
    body, _ = CASES["queue without a path for a remote target"]
    source = write_project(tmp_path / "src", body)
    out = tmp_path / "out"
    result = run_build("-f", str(source), "-o", str(out), "--target", "local", "--json")
    assert result.exit_code == 0, result.stderr
    child = yaml.safe_load((out / "child" / "function.yaml").read_text())
    env = {e["name"]: e.get("value") for e in child["spec"]["env"]}
    assert "GRAPHPACK_QUEUE_CONSUMER" not in env  # the local deployer supplies its default queue
    assert env["GRAPHPACK_CONSUMER_GROUP"] == "shop-api-child"


def test_design_example_builds_for_every_target(tmp_path):
    for target in ("local", "docker", "nuclio", "knative"):
        source = write_project(tmp_path / "src", DESIGN, QUEUE="s3://bucket/q1", SHARDS=None)
        assert run_build("-f", str(source), "-o", str(tmp_path / target), "--target", target).exit_code == 0


def test_router_route_in_a_child_counts_as_running_there(tmp_path):
    source = write_project(tmp_path / "src", '''
fn = project.set_function("serving.py", name="api")
fn.set_topology("router")
fn.add_model("m1", class_name="Echo", model_path="/m", child_function="side")
fn.add_child_function("side")
''')
    assert run_build("-f", str(source), "-o", str(tmp_path / "out")).exit_code == 0


def test_output_that_is_a_file(tmp_path):
    source = write_project(tmp_path / "src", FLOW)
    out = tmp_path / "taken"
    out.write_text("not a directory")
    result = run_build("-f", str(source), "-o", str(out))
    assert result.exit_code == 1 and "cannot write the build output" in result.stderr
    assert out.read_text() == "not a directory"
