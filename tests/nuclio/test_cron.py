"""Cron interval triggers under the real Nuclio processor deliver their declared body to the graph,
once per interval, exactly as ``graphpack serve`` does for the same build directory."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import CRON_BODIES, Built
from .runner import GraphpackServe, NuclioProcessor


def read_log(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def cron_records(path: Path, want: int, timeout: float = 15.0) -> list[dict]:
    """The cron records in ``path`` once every trigger fired ``want`` times."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in read_log(path) if r["trigger"] == "cron"]
        fired = [sum(1 for r in records if r["body"] == json.loads(json.dumps(body)))
                 for body in CRON_BODIES.values()]
        if min(fired) >= want or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def test_interval_triggers_deliver_their_bodies(toolchain: dict, shop: Built, tmp_path: Path) -> None:
    logs = {"nuclio": tmp_path / "nuclio.jsonl", "serve": tmp_path / "serve.jsonl"}
    nuclio = NuclioProcessor(toolchain, shop.function("mirror"), env={"MIRROR_LOG": str(logs["nuclio"])})
    serve = GraphpackServe(shop.function("mirror"), env={"MIRROR_LOG": str(logs["serve"])})
    with nuclio.spawn(), serve.spawn():
        nuclio.wait_ready()
        serve.wait_ready()
        started = time.monotonic()
        seen = {name: cron_records(path, want=3) for name, path in logs.items()}
        elapsed = time.monotonic() - started
    for name, records in seen.items():
        by_body = {json.dumps(body): [r for r in records if r["body"] == body] for body in CRON_BODIES.values()}
        assert all(len(hits) >= 3 for hits in by_body.values()), f"{name}: {records}\n{nuclio.logs()[-3000:]}"
        assert len(records) <= 2 * (elapsed + 3), f"{name}: more events than a 1s interval allows: {records}"
        assert {(r["type"], r["method"], r["path"]) for r in by_body['{"op": "tick"}']} == {("dict", "POST", "/")}
        assert {r["type"] for r in by_body['"plain note"']} == {"str"}, f"{name}: {by_body}"
    strip = [{k: v for k, v in r.items()} for r in seen["nuclio"][:2]]
    assert all(r in [dict(x) for x in seen["serve"]] for r in strip), (seen["nuclio"][:2], seen["serve"][:4])
