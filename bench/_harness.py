"""Shared timing helpers for graphpack's benchmarks.

Every bench measures the same way: a warmup, then ``repeats`` timed runs of ``events``
calls each, and reports the median run as µs/event and events/s. This module imports
nothing but the standard library, so the peer venvs (bench/.venv-peers) can use it too.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

RESULT_MARKER = "@@BENCH-RESULT@@ "


@dataclass
class Timing:
    """The median of several timed runs of one measured case."""

    name: str
    events: int
    repeats: int
    runs_us: list[float] = field(default_factory=list)  # µs/event of each run

    @property
    def us_per_event(self) -> float:
        """Median µs per event over the runs."""
        return statistics.median(self.runs_us)

    @property
    def events_per_s(self) -> float:
        """Events per second at the median."""
        return 1e6 / self.us_per_event

    @property
    def spread(self) -> float:
        """(max - min) / median of the runs, a rough noise figure."""
        return (max(self.runs_us) - min(self.runs_us)) / self.us_per_event

    def to_dict(self) -> dict:
        d = asdict(self)
        d["us_per_event"] = self.us_per_event
        d["events_per_s"] = self.events_per_s
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Timing":
        return cls(name=d["name"], events=d["events"], repeats=d["repeats"], runs_us=list(d["runs_us"]))


def measure(
    name: str,
    call: Callable[[], object],
    events: int,
    repeats: int = 5,
    warmup: int | None = None,
    after: Callable[[], object] | None = None,
) -> Timing:
    """Time ``call()`` run ``events`` times, ``repeats`` times over, after a warmup.

    ``after`` (e.g. a server's ``wait_for_completion``) runs inside each timed run, after
    the last call, so work left in flight counts. The garbage collector is collected before
    and stays enabled during each run, as in real use.
    """
    if events < 1 or repeats < 1:
        raise ValueError("events and repeats must be >= 1")
    warm = warmup if warmup is not None else max(1, min(events // 10, 2000))
    for _ in range(warm):
        call()
    timing = Timing(name=name, events=events, repeats=repeats)
    loop = range(events)
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in loop:
            call()
        if after is not None:
            after()
        elapsed = time.perf_counter() - start
        timing.runs_us.append(elapsed / events * 1e6)
    return timing


def format_timing(t: Timing, width: int = 24) -> str:
    """One line: name, µs/event, events/s, spread."""
    return (
        f"  {t.name:<{width}} {t.us_per_event:10.2f} µs/event {t.events_per_s:14,.0f} events/s"
        f"   (median of {t.repeats} x {t.events:,}, spread {t.spread:.0%})"
    )


def ratio_line(label: str, value: float | None, goal: str | None = None, ok: bool | None = None) -> str:
    """One ratio line: ``ratio <label>: 3.10x  goal >= 2.5x  MET``, or n/a when not measured."""
    text = f"ratio {label}: " + ("n/a" if value is None else f"{value:.2f}x")
    if goal:
        text += f"  (goal {goal})"
    if ok is not None and value is not None:
        text += "  MET" if ok else "  MISSED"
    return text


def print_table(timings: Iterable[Timing]) -> None:
    """Print a µs/event table, one line per timing."""
    for t in timings:
        print(format_timing(t), flush=True)


def emit_result(payload: dict) -> None:
    """Print a JSON result on one marked line, for a parent process to read back."""
    print(RESULT_MARKER + json.dumps(payload), flush=True)


def read_result(output: str) -> dict:
    """Find the last marked JSON result in a child process's output."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise ValueError("no benchmark result in the output:\n" + output[-2000:])
