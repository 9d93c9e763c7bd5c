"""The seed router and flow graphs, and a mirror flow, built with ``graphpack build`` and run by
the real Nuclio processor (its Go http trigger, its Python wrapper, nuclio-sdk 0.5.13) answer
every request with the same status, content type, X-* headers and body as the project's mock
server, and as ``graphpack serve`` running the same build directory; an async flow without a
responder answers at once and finishes its events in the background."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..runtime.rawhttp import exchange, parse_responses
from .client import Answer, Case, from_mock, over_http
from .conftest import CRON_BODIES, Built, mock_server
from .runner import GraphpackServe, NuclioProcessor

ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 5.1, 1.8]]

CASES = {
    "router": [
        Case("infer-json", "/v2/models/iris/infer", {"inputs": ROWS}),
        Case("echo-json", "/v2/models/echo/infer", {"inputs": [1, "a", None, 2.5]}),
        Case("list-models", "/v2/models/", method="GET"),
        Case("health", "/v2/health", method="GET"),
        Case("ready", "/v2/models/iris/ready", method="GET"),
        Case("unknown-model-400", "/v2/models/ghost/infer", {"inputs": ROWS}),
        Case("missing-inputs-400", "/v2/models/iris/infer", {"rows": ROWS}),
        Case("text-400", "/v2/models/iris/infer", "five point one"),
        Case("bytes-400", "/v2/models/iris/infer", b"\x00\xff\x10"),
        Case("bad-json-400", "/v2/models/iris/infer", b"{oops", content_type="application/json"),
        Case("user-error-500", "/v2/models/broken/infer", {"inputs": [1]}),
        Case("infer-percent-path", "/v2/models/ir%69s/infer", {"inputs": ROWS}),
        Case("infer-double-slash", "//v2/models/iris/infer", {"inputs": ROWS}),
        Case("infer-dot-dot", "/v2/models/x/../iris/infer", {"inputs": ROWS}),
        Case("infer-encoded-slash", "/v2/models/iris%2Finfer", {"inputs": ROWS}),
    ],
    "flow": [
        Case("infer-json", "/v2/models/m1/infer", {"inputs": ROWS}),
        Case("unknown-model-400", "/v2/models/m9/infer", {"inputs": ROWS}),
        Case("text-body", "/v2/models/m1/infer", "plain words"),
        Case("bytes-body", "/v2/models/m1/infer", b"\x01\x02"),
    ],
    "mirror": [
        Case("json", "/mirror/json", {"a": [1, 2], "b": "x"}),
        Case("json-list", "/mirror/list", [1, 2, 3]),
        Case("text", "/mirror/text", "hello wörld"),
        Case("text-charset", "/mirror/text", "mixed Case", content_type="text/plain; charset=utf-8"),
        Case("bytes", "/mirror/bytes", bytes(range(256))),
        Case("get-no-body", "/mirror/get", method="GET"),
        Case("put-json", "/mirror/put", {"x": 1}, method="PUT"),
        Case("delete", "/mirror/thing", method="DELETE"),
        Case("unicode-json", "/mirror/json", {"name": "Zoë ☃", "n": [1.5, -2, None, True]}),
        Case("empty-json-post", "/mirror/json", b"", content_type="application/json", method="POST"),
        Case("big-bytes", "/mirror/bytes", bytes(range(256)) * 24_000),  # ~6 MB: above Nuclio's default cap
        Case("own-response", "/mirror/respond", {"respond": "a,b\n1,2\n"}),
        Case("query-string", "/mirror/q?a=1&b=two", {"x": 1}),
        Case("query-empty-value", "/mirror/q?z=&a=1", {"x": 1}),
        Case("path-percent-encoded", "/mirror/ir%69s", {"x": 1}),
        Case("path-double-slash", "//mirror//x", {"x": 1}),
        Case("path-dot-segments", "/mirror/x/../y/./z", {"x": 1}),
        Case("path-encoded-slash", "/mirror/a%2Fb", {"x": 1}),
        Case("bare-list-result", "/mirror/list", {"aslist": [1, {"b": 2}, "c"]}),
        Case("none-result", "/mirror/none", "none"),
        Case("bad-json-400", "/mirror/json", {"bad": True}),
        Case("bad-text-400", "/mirror/text", "bad"),
        Case("bad-bytes-400", "/mirror/bytes", b"bad"),
        Case("boom-json-500", "/mirror/json", {"boom": 1}),
        Case("boom-text-500", "/mirror/text", "boom"),
        Case("boom-bytes-500", "/mirror/bytes", b"boom"),
    ],
    "fire": [
        Case("json", "/fire", {"a": 1}),
        Case("text", "/fire", "words"),
        Case("boom-later", "/fire", "boom"),  # fails after the answer: still {"id": ...}
    ],
}
PARAMS = [(function, case) for function, cases in CASES.items() for case in cases]


@pytest.fixture(scope="module")
def running(toolchain: dict, shop: Built) -> Iterator[dict]:
    """function -> (mock server, Nuclio processor, graphpack serve), started once for the module."""
    started: dict[str, Any] = {}
    try:
        for function in CASES:
            directory = shop.function(function)
            started[function] = [None, NuclioProcessor(toolchain, directory, triggers=dict.fromkeys(CRON_BODIES),
                                                       log_level="info").spawn(),
                                 GraphpackServe(directory).spawn()]
        for function, entry in started.items():
            entry[0] = mock_server(shop, function)
            for proc in entry[1:]:
                proc.wait_ready()
        yield started
    finally:
        for entry in started.values():
            for proc in entry[1:]:
                proc.close()
            if entry[0] is not None:
                entry[0].wait_for_completion()


@pytest.mark.parametrize("function, case", PARAMS, ids=[f"{f}-{c.name}" for f, c in PARAMS])
def test_same_answer_as_the_mock_server(running: dict, function: str, case: Case) -> None:
    mock, nuclio, serve = running[function]
    event_id = f"{function}-{case.name}"
    expected = from_mock(mock, case, event_id).normal()
    real = over_http(nuclio.url, case, event_id).normal()
    own = over_http(serve.url, case, event_id).normal()
    assert real == expected, f"Nuclio differs from the mock server:\n{nuclio.logs()[-3000:]}"
    assert own == expected, "graphpack serve differs from the mock server"


def test_statuses_cover_200_400_500(running: dict) -> None:
    """The cases above really exercise the three paths (a guard against a vacuous comparison)."""
    mock = running["router"][0]
    statuses = {from_mock(mock, case).status for case in CASES["router"]}
    assert {200, 400, 500} <= statuses
    answer: Answer = over_http(running["mirror"][1].url, Case("t", "/x", "hi"))
    assert (answer.status, answer.content_type, answer.body) == (200, "text/plain", "HI")
    answer = over_http(running["mirror"][1].url, Case("b", "/x", b"\x00\x01"))
    assert (answer.status, answer.content_type, answer.body) == (200, "application/octet-stream", b"\x01\x00")


def test_async_flow_without_responder_finishes_in_the_background(toolchain: dict, shop: Built,
                                                                 tmp_path: Path) -> None:
    log = tmp_path / "fire.jsonl"
    with NuclioProcessor(toolchain, shop.function("fire"), env={"MIRROR_LOG": str(log)}) as nuclio:
        ids = [f"fire-{i}" for i in range(10)]
        for event_id in ids:
            answer = over_http(nuclio.url, Case(event_id, "/fire", {"n": event_id}), event_id)
            assert (answer.status, answer.body) == (200, {"id": event_id})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            if len(records) >= len(ids):
                break
            time.sleep(0.1)
    assert sorted(r["body"]["n"] for r in records) == sorted(ids), nuclio.logs()[-3000:]


def test_each_event_gets_its_own_id(running: dict) -> None:
    """Nuclio's http trigger hands every event of a worker the same id; the entry module gives
    each event a fresh one when the trigger's id repeats (graphpack serve: a fresh id anyway)."""
    for server in running["router"][1:]:
        ids = set()
        for _ in range(4):
            answer = over_http(server.url, Case("no-id", "/v2/models/echo/infer", {"inputs": [1]}))
            assert answer.status == 200
            ids.add(answer.body["id"])
        assert len(ids) == 4, f"{server.name}: repeated event ids {ids}"
        given = over_http(server.url, Case("own-id", "/v2/models/echo/infer", {"inputs": [1]}), "mine")
        assert given.body["id"] == "mine"


def test_front_door_headers_and_head(running: dict) -> None:
    """Both servers send Date and their own Server header; HEAD gets headers only, and the next
    answer on the same connection is intact."""
    nuclio, serve = running["mirror"][1:]
    for server, name in ((nuclio, "nuclio"), (serve, "graphpack")):
        received, _ = exchange(server.port, b"HEAD /mirror/h HTTP/1.1\r\nHost: t\r\n\r\n"
                                            b"GET /mirror/g HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200"), received[:500]
        answer = parse_responses(rest)[0]
        assert answer.header("server") == name and (answer.header("date") or "").endswith("GMT")
