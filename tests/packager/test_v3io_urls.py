"""graphpack build with v3io queue URLs in MLRun's forms: the child's v3ioStream trigger (issue 16)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packager.conftest import run_build


@pytest.mark.parametrize("queue, webapi", [
    ("v3io:///projects/shop/q1", "http://v3io-webapi:8081"),
    ("v3io://10.1.2.3:8081/projects/shop/q1", "http://10.1.2.3:8081"),
    ("v3ios://webapi.example.com/projects/shop/q1", "https://webapi.example.com"),
])
def test_graphpack_build_writes_the_stream_trigger(design_project: Any, tmp_path: Path, queue: str,
                                                    webapi: str) -> None:
    out = tmp_path / "out"
    result = run_build("-f", str(design_project(queue=queue, shards=2)), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    stream = yaml.safe_load((out / "enricher" / "function.yaml").read_text())["spec"]["triggers"]["stream"]
    assert stream["kind"] == "v3ioStream" and stream["url"] == webapi
    assert stream["attributes"]["containerName"] == "projects"
    assert stream["attributes"]["streamPath"] == "/shop/q1"
    spec = json.loads((out / "recommender" / "spec.json").read_text())
    assert spec["graph"]["steps"]["q1"]["path"] == queue
