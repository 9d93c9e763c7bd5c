"""``GET /metrics``: the function's metrics, all worker processes aggregated, in Prometheus'
text exposition format (version 0.0.4).

Each worker writes a snapshot of its :class:`~graphpack.runtime.metrics.Recorder` to
``<dir>/<pid>.json`` once a second (atomically: temporary file + rename) and
when it stops; the worker answering a scrape uses its own live figures and the other workers'
latest snapshots, so another worker's counts are at most a second old. The directory belongs
to one served function: ``graphpack serve`` empties it at start (``$GRAPHPACK_METRICS_DIR``, by
default ``<tmp>/graphpack-metrics/<function>-<port>``, removed when the function stops, and by
the next start of any function when its supervisor was killed). Counters of a worker that died stay in
the sum (its snapshot file stays), gauges (requests in flight, queue lag) count live workers
only. ``process_*`` are summed over the supervisor and its live workers, as prometheus-client's
process collector reads them from ``/proc``.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .metrics import BUCKETS, Recorder

DIR_ENV = "GRAPHPACK_METRICS_DIR"
SUPERVISOR_ENV = "GRAPHPACK_METRICS_SUPERVISOR"  # pid of `graphpack serve`'s supervisor, for process_*
INTERVAL = 1.0  # seconds between two snapshots of a worker
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
OWNER_FILE = "supervisor.pid"

_HELP = {
    "graphpack_step_events_total": ("counter", "Events a step processed."),
    "graphpack_step_errors_total": ("counter", "Events that failed in a step (the step's own exceptions)."),
    "graphpack_step_duration_seconds": ("histogram", "Time a step took per event."),
    "graphpack_queue_records_pushed_total": ("counter", "Records pushed to a queue and stored."),
    "graphpack_queue_records_consumed_total": ("counter", "Queue records a consumer handled, by shard."),
    "graphpack_queue_records_retried_total": ("counter", "Handling attempts of queue records that failed and were retried."),
    "graphpack_queue_records_dead_lettered_total": ("counter", "Queue records sent to the dead-letter queue."),
    "graphpack_queue_lag_records": ("gauge", "Records in a shard the consumer group has not handled yet."),
    "graphpack_queue_lag_seconds": ("gauge", "Age of the last record handled while records remain (0 when caught up)."),
    "graphpack_http_requests_total": ("counter", "HTTP requests answered, by status code."),
    "graphpack_http_busy_rejections_total": ("counter", "HTTP requests answered 503 because every worker stayed busy."),
    "graphpack_http_requests_in_flight": ("gauge", "HTTP requests being processed."),
    "process_cpu_seconds_total": ("counter", "Total user and system CPU time spent in seconds."),
    "process_virtual_memory_bytes": ("gauge", "Virtual memory size in bytes."),
    "process_resident_memory_bytes": ("gauge", "Resident memory size in bytes."),
    "process_start_time_seconds": ("gauge", "Start time of the process since unix epoch in seconds."),
    "process_open_fds": ("gauge", "Number of open file descriptors."),
    "process_max_fds": ("gauge", "Maximum number of open file descriptors."),
}


def default_dir(function: str, port: int) -> Path:
    return Path(tempfile.gettempdir()) / "graphpack-metrics" / f"{function}-{port}"


def prepare(directory: Path) -> Path:
    """Empty (or create) the function's metrics directory, owned by this process (the supervisor);
    call once, before workers start."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OWNER_FILE).write_text(str(os.getpid()))
    return directory


def prune(parent: Path) -> None:
    """Remove the metrics directories under ``parent`` whose supervisor is gone (it was killed)."""
    for directory in parent.glob("*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or being created
        if not _alive(owner):
            shutil.rmtree(directory, ignore_errors=True)


def write_snapshot(recorder: Recorder, directory: str | Path) -> dict:
    """Write this worker's snapshot file; returns the snapshot."""
    snap = recorder.snapshot()
    path = Path(directory) / f"{snap['pid']}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(snap, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        pass  # the directory went away (the function is being replaced): the next scrape lacks it
    return snap


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def snapshots(directory: str | Path, own: dict | None = None) -> list[tuple[dict, bool]]:
    """(snapshot, worker alive) for every worker of the function; ``own`` replaces this process's file."""
    out: list[tuple[dict, bool]] = []
    me = os.getpid()
    for path in sorted(Path(directory).glob("*.json")):
        try:
            pid = int(path.stem)
        except ValueError:
            continue
        if own is not None and pid == me:
            continue
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed or replaced meanwhile
        out.append((snap, _alive(pid)))
    if own is not None:
        out.append((own, True))
    return out


class _Families:
    """Samples by metric family, summed by label set."""

    def __init__(self) -> None:
        self.samples: dict[str, dict[tuple, float]] = {}

    def add(self, family: str, labels: tuple, value: float, how: str = "sum") -> None:
        samples = self.samples.setdefault(family, {})
        if how == "max" and labels in samples:
            samples[labels] = max(samples[labels], value)
        else:
            samples[labels] = samples.get(labels, 0) + value


def aggregate(snaps: Iterable[tuple[dict, bool]]) -> _Families:
    """Sum the workers' counters and histograms; gauges from live workers only."""
    families = _Families()
    add = families.add
    for snap, alive in snaps:
        fn = str(snap.get("function", ""))
        for step, (events, errors, seconds, buckets) in (snap.get("steps") or {}).items():
            labels = (("function", fn), ("step", step))
            add("graphpack_step_events_total", labels, events)
            add("graphpack_step_errors_total", labels, errors)
            add("graphpack_step_duration_seconds_sum", labels, seconds)
            add("graphpack_step_duration_seconds_count", labels, events)
            for bound, count in zip(list(BUCKETS) + [float("inf")], _cumulative(buckets)):
                add("graphpack_step_duration_seconds_bucket", labels + (("le", _le(bound)),), count)
        for queue, stats in (snap.get("queues") or {}).items():
            labels = (("function", fn), ("queue", queue))
            for key in ("pushed", "retried", "dead_lettered"):
                add(f"graphpack_queue_records_{key}_total", labels, stats.get(key, 0))
            for shard, count in (stats.get("consumed") or {}).items():
                add("graphpack_queue_records_consumed_total", labels + (("shard", shard),), count)
            if alive:
                for shard, (records, seconds) in (stats.get("lag") or {}).items():
                    add("graphpack_queue_lag_records", labels + (("shard", shard),), records, "max")
                    add("graphpack_queue_lag_seconds", labels + (("shard", shard),), seconds, "max")
        http = snap.get("http") or {}
        for code, count in (http.get("codes") or {}).items():
            add("graphpack_http_requests_total", (("function", fn), ("code", code)), count)
        add("graphpack_http_busy_rejections_total", (("function", fn),), http.get("busy", 0))
        if alive:
            add("graphpack_http_requests_in_flight", (("function", fn),), http.get("in_flight", 0))
    return families


def _cumulative(buckets: list) -> list:
    out, total = [], 0
    for count in buckets:
        total += count
        out.append(total)
    return out


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


# -- process_* ----------------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = resource.getpagesize()


def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def process_stats(pids: Iterable[int]) -> dict[str, float]:
    """The ``process_*`` figures summed over ``pids`` (start time: the earliest; max fds: the least)."""
    out: dict[str, float] = {}
    boot = _boot_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            limits = Path(f"/proc/{pid}/limits").read_text()
        except (OSError, IndexError):
            continue  # gone meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        out["process_cpu_seconds_total"] = out.get("process_cpu_seconds_total", 0.0) + cpu
        out["process_virtual_memory_bytes"] = out.get("process_virtual_memory_bytes", 0.0) + int(fields[20])
        out["process_resident_memory_bytes"] = out.get("process_resident_memory_bytes", 0.0) + int(fields[21]) * _PAGE
        start = int(fields[19]) / _TICKS + boot
        out["process_start_time_seconds"] = min(out.get("process_start_time_seconds", start), start)
        out["process_open_fds"] = out.get("process_open_fds", 0.0) + fds
        for line in limits.splitlines():
            if line.startswith("Max open files"):
                limit = float(line.split()[3])
                out["process_max_fds"] = min(out.get("process_max_fds", limit), limit)
    return out


# -- rendering ----------------------------------------------------------------------------------
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(families: _Families, process: dict[str, float] | None = None) -> bytes:
    """The text exposition of ``families`` (and the process figures)."""
    lines: list[str] = []
    for family, (kind, text) in _HELP.items():
        if family.startswith("process_"):
            if process and family in process:
                lines += [f"# HELP {family} {text}", f"# TYPE {family} {kind}", f"{family} {_number(process[family])}"]
            continue
        names = [f"{family}_bucket", f"{family}_sum", f"{family}_count"] if kind == "histogram" else [family]
        if not any(name in families.samples for name in names):
            continue
        lines += [f"# HELP {family} {text}", f"# TYPE {family} {kind}"]
        for name in names:
            for labels, value in sorted(families.samples.get(name, {}).items(), key=_order):
                inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels)
                lines.append(f"{name}{{{inner}}} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()


def _order(item: tuple) -> tuple:
    labels = item[0]
    return tuple((k, float(v.replace("+Inf", "inf")) if k == "le" else v) for k, v in labels)


def exposition(recorder: Recorder, directory: str | Path, pids: Iterable[int] = ()) -> bytes:
    """The ``/metrics`` body: this worker's live figures, the others' snapshots, process stats."""
    own = recorder.snapshot()
    snaps = snapshots(directory, own)
    live = {int(s.get("pid", 0)) for s, alive in snaps if alive}
    return render(aggregate(snaps), process_stats(sorted(live | set(pids))))


def supervisor_pids() -> list[int]:
    """The supervisor's pid, when this worker was forked by one."""
    value = os.environ.get(SUPERVISOR_ENV, "")
    return [int(value)] if value.isdigit() and int(value) != os.getpid() else []


__all__ = ["CONTENT_TYPE", "DIR_ENV", "INTERVAL", "METRICS_PATH", "aggregate", "default_dir", "exposition",
           "prepare", "process_stats", "render", "snapshots", "write_snapshot"]
