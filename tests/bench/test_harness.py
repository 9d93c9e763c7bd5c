"""bench/_harness.py: timing, formatting and the child-result protocol."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "bench"))  # appended: bench/http.py must not shadow the stdlib http
import _harness  # noqa: E402


def test_measure_counts_calls_and_reports_median() -> None:
    calls = []
    done = []
    t = _harness.measure("x", lambda: calls.append(1), events=100, repeats=3, warmup=7,
                         after=lambda: done.append(1))
    assert len(calls) == 7 + 300
    assert len(done) == 3
    assert len(t.runs_us) == 3 and t.us_per_event == sorted(t.runs_us)[1]
    assert t.events_per_s == pytest.approx(1e6 / t.us_per_event)


def test_measure_sees_slow_calls() -> None:
    t = _harness.measure("sleep", lambda: time.sleep(0.001), events=5, repeats=1, warmup=0)
    assert t.us_per_event >= 1000


def test_measure_rejects_empty_runs() -> None:
    with pytest.raises(ValueError):
        _harness.measure("x", lambda: None, events=0)


def test_ratio_lines() -> None:
    assert _harness.ratio_line("a vs b", 3.14159, ">= 2x", True) == "ratio a vs b: 3.14x  (goal >= 2x)  MET"
    assert _harness.ratio_line("a vs b", 1.5, ">= 2x", False).endswith("MISSED")
    assert _harness.ratio_line("a vs b", None, ">= 2x", False) == "ratio a vs b: n/a  (goal >= 2x)"


def test_result_round_trip_through_a_child_process() -> None:
    t = _harness.Timing("case", 10, 2, [1.0, 3.0])
    code = ("import sys; sys.path.insert(0, %r); import _harness; print('noise');"
            "_harness.emit_result({'case': %r}); print('more noise')") % (
        str(Path(_harness.__file__).parent), t.to_dict())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    back = _harness.Timing.from_dict(_harness.read_result(out)["case"])
    assert back.us_per_event == 2.0 and back.runs_us == [1.0, 3.0]
    with pytest.raises(ValueError):
        _harness.read_result("no result here")


WORKER_CODE = """
import sys, time
sys.path.append(%r)
import _harness
calls = []
print("some startup noise", flush=True)
_harness.serve({"fast": lambda: calls.append(1), "slow": lambda: time.sleep(0.0005)}, warmup=3,
               done=lambda: print("done after", len(calls), file=sys.stderr, flush=True))
"""


def test_workers_take_turns_and_report_each_case() -> None:
    code = WORKER_CODE % str(Path(_harness.__file__).parent)
    a = _harness.Worker("a", [sys.executable, "-c", code])
    b = _harness.Worker("b", [sys.executable, "-c", code])
    try:
        assert a.cases == ["fast", "slow"]
        timings = _harness.interleave([a, b], {"fast": 50, "slow": 4}, repeats=3)
    finally:
        a.close()
        b.close()
    assert sorted(timings) == ["a fast", "a slow", "b fast", "b slow"]
    assert all(len(t.runs_us) == 3 for t in timings.values())
    assert timings["a slow"].us_per_event >= 500 > timings["a fast"].us_per_event
    assert a.proc.returncode == 0 and b.proc.returncode == 0


def test_worker_that_dies_reports_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _harness.Worker("bad", [sys.executable, "-c", "raise SystemExit('boom')"])
