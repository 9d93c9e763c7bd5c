"""bench/queues.py still runs and prints its figures (a short smoke run, not the measurement)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))  # appended: bench/http.py must not shadow the stdlib http

from _harness import read_result


def test_bench_smoke(s3_server):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "queues.py"), "--endpoint", s3_server, "--rate", "3000",
         "--seconds", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "events/s" in out and "S3 requests per event" in out and "p99" in out
    result = read_result(out)
    assert result["events"] == 3000
    assert 0 < result["requests_per_event"] < 0.1
    assert result["p50_ms"] <= result["p99_ms"]
