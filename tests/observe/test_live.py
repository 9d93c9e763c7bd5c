"""`graphpack top` and `graphpack ui` against the example deployed locally under load, the page
driven in a real headless Chromium (Debian's chromium + chromium-driver, through selenium): every
step and queue is drawn, the figures move while events flow, a failure injected into the child's
`audit` step shows on that step and in its recent errors. The screenshot is kept as an artifact
($GRAPHPACK_ARTIFACTS, else the test's tmp directory; the test prints its path)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from graphpack.graph.steps import FlowStep, RouterStep
from graphpack.observe.deployment import load_deployment

REPO = Path(__file__).resolve().parents[2]
OBSERVED = '''"""The shop example with an error stream, where graphpack ui reads failed events."""
import os

from project import HERE, fn, project  # noqa: F401 - graphpack reads `project`

fn.spec.error_stream = os.path.join(HERE, ".graphpack", "queues", "errors")
'''
REQUEST = {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphpack.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/shop with an error stream, trained and deployed locally; taken down at the end."""
    copy = tmp_path_factory.mktemp("observe") / "shop"
    shutil.copytree(REPO / "examples" / "shop", copy, ignore=shutil.ignore_patterns(
        ".graphpack", "build", "models", "graphpack.yaml", "*.jsonl", "__pycache__"))
    (copy / "observed.py").write_text(OBSERVED)
    trained = subprocess.run([sys.executable, "project.py"], cwd=copy, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    deployed = cli("deploy", "-C", str(copy), "-f", "observed.py")
    assert deployed.returncode == 0, deployed.stderr
    try:
        yield copy
    finally:
        cli("down", "--purge", "-C", str(copy), timeout=120)


@pytest.fixture(scope="module")
def load(shop: Path) -> Iterator[dict]:
    """Requests to the root, about 25 a second, while the module's tests run; counts the answers."""
    url = load_deployment("local", shop).functions["recommender"].url + "/v2/models/iris/infer"
    stop, answers = threading.Event(), {"ok": 0, "failed": 0}

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.wait(0.04):
                try:
                    ok = client.post(url, json=REQUEST).status_code == 200
                except httpx.HTTPError:
                    ok = False
                answers["ok" if ok else "failed"] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: answers["ok"] >= 5, 30, "the root answers requests")
    yield answers
    stop.set()
    thread.join(timeout=15)


def expected_nodes(shop: Path) -> set[str]:
    """Every step, route and queue of the deployed graph, by full name."""
    graph = load_deployment("local", shop).graph("recommender")
    assert isinstance(graph, FlowStep)
    names = set()
    for step in graph.steps.values():
        names.add(step.fullname)
        if isinstance(step, RouterStep):
            names |= {route.fullname for route in step.routes.values()}
    return names


# -- graphpack top --------------------------------------------------------------------------------
def test_top_json_prints_one_snapshot_with_rates(shop: Path, load: dict) -> None:
    proc = cli("top", "--json", "-C", str(shop), "--interval", "1", timeout=60)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    assert set(snap["functions"]) == {"recommender", "auditor"} and all(f["up"] for f in snap["functions"].values())
    graph = snap["graphs"]["recommender"]
    assert graph["steps"]["enrich"]["rate"] > 0 and graph["steps"]["enrich"]["p99"] > 0
    assert graph["steps"]["audit"]["functions"] == ["auditor"]
    assert graph["queues"]["audit-queue"]["push_rate"] > 0
    assert snap["functions"]["recommender"]["requests_per_s"] > 0


def test_top_redraws_a_table_per_refresh(shop: Path, load: dict) -> None:
    proc = cli("top", "-C", str(shop), "--interval", "0.5", "--count", "2", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("recommender", "auditor", "enrich", "router.iris", "audit-queue", "audit"):
        assert name in proc.stdout, proc.stdout
    assert re.search(r"enrich\s.*\s\d[\d,]*\.\d", proc.stdout), proc.stdout  # a rate in the enrich row


def test_top_and_ui_without_a_deployment_are_one_line_errors(tmp_path: Path) -> None:
    for command in ("top", "ui"):
        proc = cli(command, "-C", str(tmp_path), timeout=60)
        assert proc.returncode == 1 and proc.stderr.startswith("error: nothing is deployed in"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


# -- graphpack ui in a browser --------------------------------------------------------------------
@pytest.fixture(scope="module")
def ui(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`graphpack ui` on a free port; yields its address."""
    log = tmp_path_factory.mktemp("ui") / "stderr.log"
    with open(log, "w") as stderr, subprocess.Popen([sys.executable, "-m", "graphpack.cli", "ui", "-C", str(shop)],
                                                    stdout=subprocess.PIPE, stderr=stderr, text=True) as proc:
        try:
            found = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline() if proc.stdout else "")
            assert found, log.read_text()
            yield found.group(0)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def node_attr(driver: Any, step: str, name: str) -> str | None:
    return driver.execute_script("const n = document.getElementById(arguments[0]);"
                                 "return n ? n.getAttribute(arguments[1]) : null;", f"step:{step}", name)


def node_lines(driver: Any, step: str) -> list[str]:
    return driver.execute_script("return [...document.getElementById(arguments[0]).querySelectorAll('text')]"
                                 ".map(t => t.textContent);", f"step:{step}")


def artifacts_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("GRAPHPACK_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_page_draws_the_graph_moves_and_shows_an_injected_failure_on_its_step(
        shop: Path, load: dict, ui: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui)
    expected = expected_nodes(shop)
    assert expected == {"enrich", "router", "router.iris", "audit-queue", "audit"}
    drawn = wait_for(lambda: set(browser.execute_script(
        "return [...document.querySelectorAll('svg g[id^=\"step:\"]')].map(g => g.id.slice(5));")) or None,
        20, "the graph is drawn")
    assert drawn == expected
    browser.execute_script("window.keptAcrossRefreshes = 42;")  # gone if the page ever reloads
    boxes = browser.execute_script("return [...document.querySelectorAll('svg g.cluster text')].map(t => t.textContent);")
    assert {"function recommender", "function auditor"} <= set(boxes)

    # the figures move while events flow: counts grow, rates show
    first = {step: int(float(node_attr(browser, step, "data-events") or 0)) for step in ("enrich", "audit")}
    pushed = float(wait_for(lambda: node_attr(browser, "audit-queue", "data-pushed"), 10, "queue figures"))
    wait_for(lambda: all(int(float(node_attr(browser, step, "data-events") or 0)) > first[step] + 10 for step in first),
             20, f"enrich and audit count more events than {first}")
    wait_for(lambda: float(node_attr(browser, "audit-queue", "data-pushed") or 0) > pushed, 10, "the queue's pushes grow")
    consumed = float(node_attr(browser, "audit-queue", "data-consumed") or 0)
    wait_for(lambda: float(node_attr(browser, "audit-queue", "data-consumed") or 0) > consumed, 10, "the child consumes")
    assert re.match(r"in [\d.]+/s · out [\d.]+/s$", node_lines(browser, "audit-queue")[1]), node_lines(browser, "audit-queue")
    rate = re.match(r"([\d.]+)/s · p99 ([\d.]+)(µs|ms|s)", node_lines(browser, "enrich")[1])
    assert rate and float(rate.group(1)) > 0 and float(rate.group(2)) > 0, node_lines(browser, "enrich")
    assert "busy" in (node_attr(browser, "enrich", "class") or "")

    # inject a failure into the child's audit step: its file becomes a directory
    audit_file = shop / "audit.jsonl"
    audit_file.unlink(missing_ok=True)
    audit_file.mkdir()
    try:
        wait_for(lambda: int(float(node_attr(browser, "audit", "data-errors") or 0)) > 0, 30,
                 "the audit step counts errors")
        wait_for(lambda: "failing" in (node_attr(browser, "audit", "class") or ""), 10, "the audit step is marked failing")
        for step in ("enrich", "router", "router.iris"):
            assert node_attr(browser, step, "data-errors") == "0", step
            assert "failing" not in (node_attr(browser, step, "class") or "")
        browser.find_element(By.ID, "step:audit").click()
        listed = "return [...document.querySelectorAll('#errors li')].map(li => li.textContent);"  # redrawn each second
        records = wait_for(lambda: [text for text in browser.execute_script(listed) if "IsADirectoryError" in text],
                           20, "the audit step's recent errors listed")
        assert '"model_name":"iris"' in records[0]  # the failed event's body: the answer the child audits
        assert "error stream" in browser.find_element(By.ID, "errors-hint").text
        assert browser.find_element(By.ID, "errors-title").text == "Recent errors of audit"
        screenshot = artifacts_dir(tmp_path) / "graphpack-ui.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot of graphpack ui: {screenshot}")
        assert screenshot.stat().st_size > 10_000
    finally:
        audit_file.rmdir()

    assert browser.execute_script("return window.keptAcrossRefreshes;") == 42  # figures moved without a reload
    # nothing came from anywhere but the page's own server
    sources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert sources and all(s.startswith(ui) for s in sources), sources
    assert "default-src 'self'" in httpx.get(ui).headers["content-security-policy"]
