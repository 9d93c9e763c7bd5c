"""bench/queues.py still runs and prints its figures (a short smoke run, not the measurement)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))  # appended: bench/http.py must not shadow the stdlib http

from _harness import read_result


def test_bench_smoke(s3_server, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "queues.py"), "--endpoint", s3_server, "--events", "1500",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert "acknowledged" in out and "S3 requests/event" in out and "p99" in out
    cases = {(c["backend"], c["mode"]): c for c in read_result(out)["cases"]}
    assert set(cases) == {("file", "durable"), ("file", "early"), ("file", "fsync-each"), ("s3", "durable"),
                          ("s3", "early")}
    for case in cases.values():
        assert case["events"] == 1500 and case["acked_per_s"] > 0 and case["p50_ms"] <= case["p99_ms"]
    assert cases[("file", "durable")]["records_per_write"] > 1  # group commit shares writes
    assert cases[("file", "fsync-each")]["records_per_write"] == 1
    assert 0 < cases[("s3", "durable")]["requests_per_event"] < 0.2


def test_bench_kafka_smoke(kafka_broker, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "queues.py"), "--backend", "kafka", "--kafka", kafka_broker.bootstrap,
         "--events", "1500", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    cases = {(c["backend"], c["mode"]): c for c in read_result(out)["cases"]}
    assert set(cases) == {("file", "durable"), ("kafka", "durable"), ("kafka", "early")}
    for case in cases.values():
        assert case["events"] == 1500 and case["delivered_per_s"] > 0 and case["p50_ms"] <= case["p99_ms"]
        assert case["root_cpu_us"] > 0 and case["child_cpu_us"] > 0 and case["events_per_commit"] >= 1
    assert cases[("kafka", "durable")]["records_per_write"] > 1  # group commit: one produce batch per window
    assert "ratio kafka vs file queue" in out and "goal >= 50,000/s" in out
