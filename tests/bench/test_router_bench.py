"""bench/router.py runs end to end with a tiny event count and prints its ratio lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_router_bench_quick_run(tmp_path: Path) -> None:
    out_json = tmp_path / "router.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "router.py"), "--events", "30", "--repeats", "1",
         "--markdown", "--json", str(out_json)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for case in ("bare predict call", "graphpack router"):
        assert re.search(rf"{case}\s+[0-9.]+ µs/event\s+[0-9,]+ events/s", out), out
    assert re.search(r"^ratio graphpack router / bare predict \(µs/event\): [0-9.]+x$", out, re.M), out
    assert "ratio graphpack router vs MLRun router (events/s): n/a  (goal >= 3x; run with --peer mlrun" in out
    assert "| graphpack router |" in out
    data = json.loads(out_json.read_text())
    assert data["graphpack"]["events"] == 30 and data["graphpack"]["us_per_event"] > 0


def test_router_bench_cpu_clock() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "router.py"), "--events", "20", "--repeats", "1", "--clock", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratios below use process CPU time (--clock cpu)" in proc.stdout
    assert re.search(r"graphpack router\s+[0-9.]+ µs/event\s+[0-9,]+ events/s\s+[0-9.]+ cpu-µs/event", proc.stdout)
