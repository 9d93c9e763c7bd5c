"""Fixtures: a function directory (spec.json + user code module) and an initialised entry."""
from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from graphpack.handlers import entry

from .nuclio_harness import make_context

STEPS = '''
from graphpack import BadRequestError, HTTPError, NotReadyError


class Answer:
    """Answers according to body["op"]; echoes anything else."""

    def __init__(self, context, name=None):
        self.context = context

    def do(self, body):
        if isinstance(body, (bytes, bytearray)):
            return {"raw": bytes(body).decode()}
        if not isinstance(body, dict):
            return {"echo": body}
        op = body.get("op")
        if op == "list":
            return [1, 2, 3]
        if op == "none":
            return None
        if op == "bytes":
            return b"\\x00\\x01binary"
        if op == "text":
            return "hello"
        if op == "fail":
            raise ValueError("boom")
        if op == "bad":
            raise BadRequestError("no good")
        if op == "notready":
            raise NotReadyError("warming up")
        if op == "teapot":
            raise HTTPError(418, "short and stout")
        if op == "response":
            return self.context.Response(headers={"X-Test": "1"}, body={"custom": True},
                                         content_type="application/json", status_code=201)
        if op == "param":
            return {"threshold": self.context.get_param("threshold"), "fn": self.context.current_function}
        return {"echo": body}
'''


@pytest.fixture
def function_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Path, str]]:
    """Write ``spec`` to spec.json and ``code`` as a uniquely named module; returns (dir, module)."""
    monkeypatch.delenv("GRAPHPACK_SPEC_FILE", raising=False)
    monkeypatch.delenv("GRAPHPACK_SPEC", raising=False)
    monkeypatch.delenv("GRAPHPACK_QUEUE_CONSUMER", raising=False)
    names: list[str] = []

    def make(spec: dict, code: str = STEPS) -> tuple[Path, str]:
        module = f"gp_user_{uuid.uuid4().hex[:8]}"
        names.append(module)
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(code))
        return tmp_path, module

    monkeypatch.syspath_prepend(str(tmp_path))
    yield make
    entry.reset()
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def started(function_dir: Callable) -> Callable[..., Any]:
    """Initialise the entry for a spec; returns the nuclio context."""

    def start(spec: dict, kind: str = "http", code: str | None = None) -> Any:
        directory, module = function_dir(spec, code) if code is not None else function_dir(spec)
        context, _ = make_context(kind, kind)
        entry.init_context(context, modules=[module], spec_dir=str(directory))
        return context

    return start
