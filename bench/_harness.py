"""Shared timing helpers for graphpack's benchmarks.

Every bench measures the same way: a warmup, then ``repeats`` timed runs of ``events``
calls each, and reports the median run as µs/event and events/s. ``measure`` times in
process; ``serve`` / ``Worker`` / ``interleave`` time several processes (graphpack and a
peer such as MLRun) taking turns run by run, so drifting machine load hits both alike.
This module imports nothing but the standard library, so the peer venvs can use it too.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
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
    runs_us: list[float] = field(default_factory=list)  # wall-clock µs/event of each run
    cpu_runs_us: list[float] = field(default_factory=list)  # process CPU µs/event of each run

    @property
    def us_per_event(self) -> float:
        """Median µs per event over the runs."""
        return statistics.median(self.runs_us)

    @property
    def cpu_us_per_event(self) -> float | None:
        """Median process CPU µs per event (all threads), when recorded; less hit by other load."""
        return statistics.median(self.cpu_runs_us) if self.cpu_runs_us else None

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
        d["cpu_us_per_event"] = self.cpu_us_per_event
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Timing":
        return cls(name=d["name"], events=d["events"], repeats=d["repeats"], runs_us=list(d["runs_us"]),
                   cpu_runs_us=list(d.get("cpu_runs_us") or []))


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
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in loop:
            call()
        if after is not None:
            after()
        elapsed = time.perf_counter() - start
        timing.cpu_runs_us.append((time.process_time() - cpu) / events * 1e6)
        timing.runs_us.append(elapsed / events * 1e6)
    return timing


def format_timing(t: Timing, width: int = 24) -> str:
    """One line: name, µs/event, events/s, CPU µs/event, spread."""
    cpu = t.cpu_us_per_event
    return (
        f"  {t.name:<{width}} {t.us_per_event:10.2f} µs/event {t.events_per_s:14,.0f} events/s"
        + (f" {cpu:10.2f} cpu-µs/event" if cpu is not None else "")
        + f"   (median of {t.repeats} x {t.events:,}, spread {t.spread:.0%})"
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


# -- interleaved runs in worker processes -----------------------------------------------------
# On a shared machine the load drifts within seconds, so figures taken one process after the
# other are not comparable. Instead each side runs in a worker process that stays up, and the
# parent asks the workers for one timed run at a time, in turn, for every repeat.


def serve(cases: dict[str, Callable[[], object]], warmup: int = 200,
          done: Callable[[], object] | None = None) -> None:
    """Worker side: warm every case up, then answer ``run CASE EVENTS`` lines from stdin.

    Each answer is a marked result ``{"case": CASE, "us": µs/event}``; ``quit`` (or the end of
    stdin) stops serving and calls ``done`` (e.g. the mock servers' wait_for_completion).
    """
    for call in cases.values():
        for _ in range(warmup):
            call()
    emit_result({"ready": sorted(cases)})
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        _, case, events = words
        call, n = cases[case], int(events)
        gc.collect()
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(n):
            call()
        wall = time.perf_counter() - start
        emit_result({"case": case, "us": wall / n * 1e6, "cpu_us": (time.process_time() - cpu) / n * 1e6})
    if done is not None:
        done()


class Worker:
    """Parent side of :func:`serve`: a worker process asked for one timed run at a time."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: str | None = None, timeout: float = 600) -> None:
        self.label = label
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, env=env, cwd=cwd, bufsize=1)
        try:
            self.cases = self._read()["ready"]
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        seen: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=30)
                self._stderr.seek(0)
                raise RuntimeError(f"{self.label} worker exited ({self.proc.returncode}):\n"
                                   + "".join(seen[-20:]) + self._stderr.read()[-3000:])
            if line.startswith(RESULT_MARKER):
                return json.loads(line[len(RESULT_MARKER):])
            seen.append(line)

    def run(self, case: str, events: int) -> tuple[float, float]:
        """One timed run of ``events`` calls of ``case``; returns (wall, CPU) µs/event."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {case} {events}\n")
        self.proc.stdin.flush()
        result = self._read()
        return float(result["us"]), float(result["cpu_us"])

    def close(self) -> None:
        """Ask the worker to finish and wait for it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:  # the worker is gone already
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()


def interleave(workers: list[Worker], events: dict[str, int], repeats: int) -> dict[str, Timing]:
    """Time every case of every worker ``repeats`` times, taking turns run by run.

    Results are keyed ``"<worker label> <case>"``. The order of the workers alternates from
    one repeat to the next so that neither side always runs first.
    """
    out: dict[str, Timing] = {}
    for r in range(repeats):
        order = workers if r % 2 == 0 else list(reversed(workers))
        for case, n in events.items():
            for w in order:
                if case not in w.cases:
                    continue
                key = f"{w.label} {case}"
                t = out.setdefault(key, Timing(name=key, events=n, repeats=repeats))
                wall, cpu = w.run(case, n)
                t.runs_us.append(wall)
                t.cpu_runs_us.append(cpu)
    return out


def peer_bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every graphpack-vs-peer bench takes (engine.py, router.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["mlrun"], help="also run the identical graph on this peer")
    parser.add_argument("--events", type=int, help="events per timed run for every case (default: per case)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case; the median is shown")
    parser.add_argument("--json", metavar="FILE", help="write all timings to FILE as JSON")
    parser.add_argument("--markdown", action="store_true", help="also print a README table")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time the ratios use: wall clock (default) or process CPU time, "
                             "which other load on the machine disturbs less")
    parser.add_argument("--check", action="store_true", help="exit 1 when a measured goal is missed")
    parser.add_argument("--worker", metavar="MODULE", help=argparse.SUPPRESS)  # child mode: serve runs
    return parser
