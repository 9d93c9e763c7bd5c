"""A quick run of bench/nuclio.py: both servers answer the load, the figures are sane."""
from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "nuclio.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_nuclio", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("client", ["python", "wrk"])
def test_quick_bench_run(toolchain: dict, client: str, capsys: pytest.CaptureFixture) -> None:
    if client == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk (Debian package wrk) is not installed")
    bench = load_bench()
    result = bench.compare(duration=1.0, rounds=1, connections=2, client=client, warmup=0.3)
    bench.report(result)
    for name in ("nuclio", "graphpack serve"):
        run = result["median"][name]
        assert run["ok"] > 50 and run["failed"] == 0, (name, run)
        assert 0 < run["p50_ms"] <= run["p99_ms"] and math.isfinite(run["p99_ms"])
    assert result["rps_ratio"] > 0 and result["p99_ratio"] > 0
    out = capsys.readouterr().out
    assert "ratio req/s graphpack serve / nuclio" in out and ("goal MET" in out or "goal MISSED" in out)
