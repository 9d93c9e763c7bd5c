"""requirements.txt follows what each function's part of the graph uses (packager/requirements.py)."""
from __future__ import annotations

from importlib.metadata import version

import pytest

from graphpack import new_function
from graphpack.packager import plan_and_render

CODE = "class Echo:\n    def do(self, body):\n        return body\n"


def requirements(fn) -> dict[str, list[str]]:
    """function -> its requirements.txt lines (project 'p', target docker)."""
    return {c.plan.function: c.files["requirements.txt"][0].decode().split() for c in plan_and_render(fn, "p", "docker")}


def names(lines: list[str]) -> list[str]:
    return [line.split("==")[0].split(">=")[0] for line in lines]


@pytest.fixture
def code(tmp_path):
    path = tmp_path / "code.py"
    path.write_text(CODE)
    return str(path)


def test_a_plain_graph_needs_only_the_processor(code):
    fn = new_function("plain", "p", filename=code)
    fn.set_topology("flow").to("Echo", name="e").respond()
    assert requirements(fn) == {"plain": [f"{n}=={version(n)}" for n in ("PyYAML", "uvloop", "httptools")]}


def test_each_function_gets_what_its_own_steps_use(code):
    fn = new_function("shop", "p", filename=code)
    graph = fn.set_topology("flow")
    graph.to("graphpack.serving.V2ModelServer", name="m", model_path="https://models.example/m.pkl") \
        .to(">>", "q", path="v3io://bigdata/q") \
        .to("graphpack.serving.BatchHttpRequests", name="batch", url="http://x", function="kid")
    fn.add_child_function("kid", code)
    got = {name: names(lines) for name, lines in requirements(fn).items()}
    assert got["shop"] == ["PyYAML", "uvloop", "httptools", "httpx"]  # https model path, v3io queue
    assert got["kid"] == ["PyYAML", "uvloop", "httptools", "httpx"]   # v3io queue, BatchHttpRequests


def test_router_routes_s3_models_and_the_error_stream(code):
    fn = new_function("router", "p", filename=code)
    router = fn.set_topology("router")
    router.add_route("a", class_name="graphpack.serving.V2ModelServer", model_path="s3://bucket/a.pkl")
    assert names(requirements(fn)["router"]) == ["PyYAML", "uvloop", "httptools", "boto3"]
    plain = new_function("errs", "p", filename=code)
    plain.set_topology("flow").to("Echo", name="e").respond()
    plain.spec.error_stream = "s3://bucket/errors"
    assert "boto3" in names(requirements(plain)["errs"])


@pytest.mark.parametrize("schedule, wants_croniter", [("*/5 * * * *", True), ("@hourly", True), ("@every 5m", False)])
def test_cron_schedules_need_croniter_but_every_does_not(code, schedule, wants_croniter):
    fn = new_function("timed", "p", filename=code)
    fn.set_topology("flow").to("Echo", name="e").respond()
    fn.add_trigger("tick", {"kind": "cron", "attributes": {"schedule": schedule}})
    assert ("croniter" in names(requirements(fn)["timed"])) is wants_croniter


def test_the_users_requirements_follow_pinned_unless_they_say_otherwise(code):
    fn = new_function("mine", "p", filename=code, requirements=["pandas", "boto3==1.30.0", "requests>=2", "pandas"])
    fn.set_topology("flow").to(">>", "q", path="s3://bucket/q").to("Echo", name="e", function="kid")
    fn.add_child_function("kid", code)
    root = requirements(fn)["mine"]
    assert root[:3] == [f"{n}=={version(n)}" for n in ("PyYAML", "uvloop", "httptools")]
    assert root[3:] == ["boto3==1.30.0", f"pandas=={version('pandas')}", "requests>=2"]


def test_an_otlp_endpoint_in_the_env_brings_the_opentelemetry_sdk(code):
    fn = new_function("traced", "p", filename=code)
    fn.set_topology("flow").to("Echo", name="e").respond()
    assert "opentelemetry-sdk" not in names(requirements(fn)["traced"])  # spans off: nothing added
    fn.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert names(requirements(fn)["traced"]) == ["PyYAML", "uvloop", "httptools", "opentelemetry-sdk",
                                                 "opentelemetry-exporter-otlp-proto-http"]
