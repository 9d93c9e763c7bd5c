"""The README as a test: every fenced command in its Quick start, Usage and CLI sections runs,
exactly as written, against a copy of examples/shop. A block that needs a service says so in a
`# needs: NAME` line and the test starts that service (s3: a moto server; registry: Debian's
docker-registry; kube: the session's Kubernetes API server with Knative's CRDs, Services marked
Ready as Knative's controller would)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTIONS = ("Quick start", "Usage", "CLI")
SERVICES = ("s3", "registry", "kube")
BIN = str(Path(sys.executable).parent)
ANSWERS: list[str] = []  # ids of the answers `graphpack invoke` printed, in order


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## ", text, flags=re.M)
    return {part.splitlines()[0].strip(): part for part in parts[1:]}


def blocks() -> list[tuple[str, int, str, str]]:
    """(section, index, language, body) of every fenced block in the tested sections."""
    found = []
    for title, text in sections(README.read_text()).items():
        if title in SECTIONS:
            for index, match in enumerate(re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)):
                found.append((title, index, match.group(1), match.group(2)))
    return found


def commands(body: str) -> list[str]:
    """The shell commands of a bash block (continued lines joined; blank and comment lines dropped)."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def needs(body: str) -> list[str]:
    return re.findall(r"^# needs: (\w+)", body, flags=re.M)


BLOCKS = blocks()


def test_the_tested_sections_hold_runnable_blocks():
    languages = {(title, lang) for title, _, lang, _ in BLOCKS}
    assert {title for title, _ in languages} == set(SECTIONS)
    assert {lang for _, lang in languages} <= {"bash", "python"}
    for _, _, _, body in BLOCKS:
        assert set(needs(body)) <= set(SERVICES), needs(body)


def test_the_readme_links_nothing_outside_the_repository():
    text = README.read_text()
    assert "../" not in text
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if "://" in target or target.startswith("#"):
            continue
        path = (REPO / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO) and path.exists(), target


# -- services --------------------------------------------------------------------------------------
@contextlib.contextmanager
def service(name: str, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Start what a block needs; yields the environment that points the block at it."""
    if name == "s3":
        import boto3

        from tests.plugins.s3 import CREDENTIALS, moto_server

        with moto_server() as url:
            boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="bucket")
            yield {**CREDENTIALS, "AWS_ENDPOINT_URL": url}
    elif name == "registry":
        from graphpack.packager.images.testing import registry_available, run_registry

        if not registry_available():
            pytest.skip("docker-registry is not installed (Debian docker-registry; scripts/test.sh installs it)")
        with run_registry() as registry:
            yield {"GRAPHPACK_REGISTRY": registry.host}
    elif name == "kube":
        cluster = request.getfixturevalue("kube_cluster")
        cluster.create_namespace("shop")
        with cluster.controller_stand_in():
            yield {"KUBECONFIG": str(cluster.kubeconfig(cluster.home / "readme-kubeconfig"))}
    else:  # pragma: no cover - test_the_tested_sections_hold_runnable_blocks names the known services
        raise AssertionError(name)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One copy of examples/shop for every block, in README order, as a reader follows it; whatever
    a block deployed there is stopped at the end."""
    copy = tmp_path_factory.mktemp("readme") / "shop"
    shutil.copytree(REPO / "examples" / "shop", copy, ignore=shutil.ignore_patterns(
        ".graphpack", "build", "models", "graphpack.yaml", "*.jsonl", "__pycache__"))
    yield copy
    for target in ("local",):
        subprocess.run([sys.executable, "-m", "graphpack.cli", "down", "--purge", "-C", str(copy), "--target", target],
                       capture_output=True, timeout=120, check=False)


def run(command: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


def block_id(item: tuple[str, int, str, str]) -> str:
    return f"{item[0]}-{item[1]}".replace(" ", "_")


# -- the blocks ------------------------------------------------------------------------------------
def installed_from_this_checkout() -> bool:
    import importlib.metadata as md

    # every graphpack on the path: the checkout's own graphpack.egg-info (the repo root is on sys.path
    # in tests) has no direct_url.json, the installed one says where it was installed from
    urls = {json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
            for dist in md.distributions(name="graphpack")}
    return "file://" + os.path.realpath(REPO) in urls


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_block_runs_as_written(block, shop, request):
    """Each block in README order, on the same copy of the example."""
    if block[2] == "python":
        check_python_block(block, shop, request)
    else:
        check_bash_block(block, shop, request)


def check_bash_block(block: tuple[str, int, str, str], shop: Path, request: pytest.FixtureRequest) -> None:
    title, _, _, body = block
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        for name in needs(body):
            env.update(stack.enter_context(service(name, request)))
        for command in commands(body):
            if command.startswith("bash scripts/"):
                # the script installs graphpack editable from its checkout: run it only where that is
                # already so (CI), on the copy of the example
                if not installed_from_this_checkout():
                    pytest.skip(f"`{command}` would re-point the shared editable install of graphpack to {REPO}")
                result = run(command, REPO, {**env, "GRAPHPACK_EXAMPLE": str(shop)}, timeout=900)
            else:
                result = run(command, shop, env)
            assert result.returncode == 0, f"{title}: `{command}` exited {result.returncode}:\n" \
                                           f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            check_output(command, result, shop)


def check_output(command: str, result: subprocess.CompletedProcess, shop: Path) -> None:
    """What a reader of the README expects to see, beyond a zero exit."""
    out = result.stdout
    if command.startswith("bash scripts/main.sh"):
        answer = json.loads(out.split("answer: ")[-1])
        assert answer["outputs"] == [0, 2]
        record = json.loads(out.split("received the answer through the queue\n")[1].splitlines()[0])
        assert record["record"]["id"] == answer["id"]  # the deployed child got this very answer
    elif command.startswith("graphpack invoke"):
        answer = json.loads(out.strip().splitlines()[-1])
        assert isinstance(answer["outputs"], list)
        ANSWERS.append(answer["id"])
    elif command.startswith("graphpack deploy --target nuclio --dry-run"):
        assert "image: build and push 127.0.0.1:5000/shop/recommender:" in out and "was not contacted" in out
    elif command.startswith("graphpack deploy --target knative --dry-run"):
        assert "image: use registry.example.com/shop/recommender:v1" in out
        assert "apply: Service default/shop-recommender" in out
    elif command.startswith("graphpack render --target knative -o manifests/knative --function auditor --build"):
        text = (shop / "manifests" / "knative" / "shop-recommender-auditor.yaml").read_text()
        assert "@sha256:" in text
    elif command.startswith("graphpack render"):
        assert out.count(".yaml") == 2
    elif command.startswith("graphpack top --json"):
        graph = json.loads(out)["graphs"]["recommender"]
        assert graph["steps"]["enrich"]["events"] >= 1 and graph["queues"]["audit-queue"]["pushed"] >= 1
    elif command.split(" #")[0].strip() == "graphpack deploy --target knative":  # the second run
        assert "nothing to change: 2 function(s) already deployed as planned" in result.stderr
    elif command == "graphpack status --target knative":
        assert "http://shop-recommender.shop.example.com" in out and "ready" in out
    elif command.startswith("graphpack down --target knative"):
        assert out.startswith("stopped 2 function(s)")
    elif command == "graphpack logs recommender":
        assert "starting recommender" in out
    elif command == "graphpack down --purge":
        assert not (shop / ".graphpack" / "queues").exists() and not (shop / ".graphpack" / "logs").exists()
    elif command.startswith("graphpack deploy --function auditor"):
        # the answer given while the child was down reaches it once it is back (the queue kept it)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ANSWERS[-1] not in audited(shop):
            time.sleep(0.1)
        assert ANSWERS[-1] in audited(shop)


def audited(shop: Path) -> list[str]:
    path = shop / "audit.jsonl"
    return [json.loads(line)["record"]["id"] for line in path.read_text().splitlines()] if path.exists() else []


def check_python_block(block: tuple[str, int, str, str], shop: Path, request: pytest.FixtureRequest) -> None:
    title, index, _, body = block
    script = shop / f"readme_{index}.py"
    script.write_text(body)
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        for name in needs(body):
            env.update(stack.enter_context(service(name, request)))
        result = run(f"python {script.name}", shop, env)
    assert result.returncode == 0, f"{title}: exited {result.returncode}:\n{result.stdout[-2000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    assert result.stdout.count("'outputs': [0]") == 2, result.stdout


@pytest.mark.parametrize("target", ["local", "docker", "nuclio", "knative"])
def test_the_example_builds_for_every_target_out_of_the_box(target, tmp_path):
    copy = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", copy, ignore=shutil.ignore_patterns(
        ".graphpack", "build", "models", "graphpack.yaml", "*.jsonl", "__pycache__"))
    result = run(f"graphpack build -f project.py --target {target} --json", copy, {})
    assert result.returncode == 0, result.stderr
    assert sorted(f["function"] for f in json.loads(result.stdout)["functions"]) == ["auditor", "recommender"]
