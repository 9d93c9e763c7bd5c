"""bench/engine.py runs end to end with a tiny event count and prints its ratio lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_engine_bench_quick_run(tmp_path: Path) -> None:
    out_json = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "engine.py"), "--events", "30", "--repeats", "1",
         "--markdown", "--json", str(out_json)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for case in ("bare Python chain", "graphpack sync", "graphpack async", "graphpack sync-handler",
                 "graphpack async-handler"):
        assert re.search(rf"{case}\s+[0-9.]+ µs/event\s+[0-9,]+ events/s", out), out
    assert re.search(r"^ratio graphpack sync / bare chain \(µs/event\): [0-9.]+x  \(goal <= 2.5x\)  (MET|MISSED)$",
                     out, re.M), out
    assert "ratio graphpack sync vs MLRun sync (events/s): n/a" in out
    assert "ratio graphpack async vs MLRun async (events/s): n/a" in out
    assert "| graphpack async |" in out
    assert '"graphpack"' in out_json.read_text()
