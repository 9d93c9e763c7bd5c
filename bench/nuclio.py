"""HTTP benchmark: the same 1-step graph, 1 worker, under the real Nuclio processor and under
``graphpack serve``, with the same load generator in the same run.

The graph is a flow with one step (``Echo.do`` returns its body), built once with
``graphpack build``; both servers run that build directory with one worker. The load is ``wrk``
(Debian's; ``--client python`` or no wrk on PATH: a small threaded keep-alive client) posting
``{"inputs": [[1, 2, 3, 4]]}`` as JSON over ``--connections`` connections. The two servers take
turns, ``--rounds`` runs of ``--duration`` seconds each, so drifting machine load hits both;
each figure's median over the rounds is reported (successful req/s, p50 and p99 latency;
failed answers, i.e. non-2xx and socket errors, are summed) with the ratios against the goal:
graphpack serve >= 1.5x Nuclio's req/s with a p99 no worse.

The Nuclio processor, its wrapper and Python come from the test setup step
(``python -m tests.nuclio.toolchain``, run by ``bash scripts/test.sh``).

    python bench/nuclio.py                         # 3 rounds x 10 s, 8 connections
    python bench/nuclio.py --rounds 1 --duration 2 # a quick smoke run
    python bench/nuclio.py --json                  # also print the figures as JSON
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/ must not shadow the standard library (bench/http.py): it goes last on sys.path.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.nuclio import toolchain as tc
from tests.nuclio.client import Case, over_http
from tests.nuclio.runner import GraphpackServe, NuclioProcessor

PATH = "/"
BODY = json.dumps({"inputs": [[1, 2, 3, 4]]})
GOAL_RPS = 1.5
CODE = '''
class Echo:
    def do(self, body):
        return body
'''
PROJECT = '''
import graphpack

project = graphpack.get_or_create_project("bench", "./")
fn = project.set_function("serving.py", name="echo", kind="serving")
fn.set_topology("flow", engine="sync").to(class_name="Echo", name="echo").respond()
'''


@dataclass
class Run:
    """One timed load run against one server."""

    server: str
    seconds: float
    ok: int          # 2xx answers
    failed: int      # other answers and socket errors
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


def build(directory: Path) -> Path:
    """``graphpack build`` of the 1-step graph; returns the function's build directory."""
    (directory / "serving.py").write_text(CODE)
    (directory / "project.py").write_text(PROJECT)
    subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "build"],
                   cwd=directory, check=True, capture_output=True, text=True)
    return directory / "build" / "echo"


# -- load generators --------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(server: str, url: str, duration: float, connections: int, workdir: Path) -> Run:
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      f"wrk.body = {json.dumps(BODY)}\n"
                      'wrk.headers["Content-Type"] = "application/json"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script),
                          url + PATH], check=True, capture_output=True, text=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if total is None:
        raise ValueError(f"unexpected wrk output:\n{out}")
    seconds = _ms(total.group(2) + total.group(3)) / 1e3
    requests = int(total.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non2xx.group(1)) if non2xx else 0)
    socket_errors = sum(int(g) for g in errors.groups()) if errors else 0
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE)
    return Run(server, seconds, requests - failed, failed + socket_errors, _ms(p50.group(1)), _ms(p99.group(1)))


def python_client(server: str, url: str, duration: float, connections: int, workdir: Path) -> Run:
    """Keep-alive POSTs from ``connections`` threads (the GIL makes this a weaker generator)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[list[float]] = [[] for _ in range(connections)]
    failures = [0] * connections
    stop = time.monotonic() + duration
    headers = {"Content-Type": "application/json"}

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                conn.request("POST", PATH, BODY, headers)
                response = conn.getresponse()
                response.read()
            except OSError:
                failures[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                continue
            if 200 <= response.status < 300:
                latencies[i].append((time.perf_counter() - start) * 1e3)
            else:
                failures[i] += 1
        conn.close()

    began = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - began
    merged = sorted(x for part in latencies for x in part)
    if not merged:
        return Run(server, seconds, 0, sum(failures), float("nan"), float("nan"))
    return Run(server, seconds, len(merged), sum(failures), merged[len(merged) // 2],
               merged[min(len(merged) - 1, int(len(merged) * 0.99))])


# -- the comparison ---------------------------------------------------------------------------
def summarize(runs: list[Run]) -> dict:
    """Each figure's median over the rounds (failures summed)."""
    return {"rps": statistics.median(r.rps for r in runs), "p50_ms": statistics.median(r.p50_ms for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs), "ok": sum(r.ok for r in runs),
            "failed": sum(r.failed for r in runs)}


def compare(duration: float, rounds: int, connections: int, client: str, warmup: float) -> dict:
    toolchain = tc.load()
    generate = wrk if client == "wrk" else python_client
    workdir = Path(tempfile.mkdtemp(prefix="graphpack-bench-nuclio-"))
    try:
        function_dir = build(workdir)
        nuclio = NuclioProcessor(toolchain, function_dir, workers=1, log_level="info")
        serve = GraphpackServe(function_dir, workers=1)
        servers = {"nuclio": nuclio, "graphpack serve": serve}
        with nuclio.spawn(), serve.spawn():
            nuclio.wait_ready()
            serve.wait_ready()
            for name, proc in servers.items():  # both answer the request with the echoed body
                answer = over_http(proc.url, Case("check", PATH, json.loads(BODY)))
                if (answer.status, answer.body) != (200, json.loads(BODY)):
                    raise RuntimeError(f"{name} answered {answer}:\n{proc.logs()[-3000:]}")
            for name, proc in servers.items():  # warm both up (imports, JIT-free but caches)
                generate(name, proc.url, warmup, connections, workdir)
            runs: dict[str, list[Run]] = {name: [] for name in servers}
            for index in range(rounds):
                order = list(servers.items())
                if index % 2:
                    order.reverse()  # alternate who goes first
                for name, proc in order:
                    run = generate(name, proc.url, duration, connections, workdir)
                    runs[name].append(run)
                    print(f"  round {index + 1}: {name:<16} {run.rps:9.0f} req/s  p50 {run.p50_ms:7.2f} ms"
                          f"  p99 {run.p99_ms:7.2f} ms  failed {run.failed}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best = {name: summarize(r) for name, r in runs.items()}
    ours, theirs = best["graphpack serve"], best["nuclio"]
    rps_ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else None
    p99_ratio = ours["p99_ms"] / theirs["p99_ms"] if theirs["p99_ms"] else None
    return {
        "client": client, "connections": connections, "duration_s": duration, "rounds": rounds,
        "nuclio_version": toolchain["version"],
        "median": best,
        "all_rps": {name: [round(r.rps, 1) for r in rs] for name, rs in runs.items()},
        "rps_ratio": rps_ratio, "p99_ratio": p99_ratio,
        "goal_met": bool(rps_ratio and p99_ratio and rps_ratio >= GOAL_RPS and p99_ratio <= 1.0),
    }


def report(result: dict) -> None:
    print(f"\n1-step graph, 1 worker, {result['client']} with {result['connections']} connections, "
          f"median of {result['rounds']} x {result['duration_s']:g} s (Nuclio {result['nuclio_version']})")
    print(f"  {'server':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for name, run in result["median"].items():
        print(f"  {name:<16} {run['rps']:9.0f} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f} {run['failed']:7d}")
    rps, p99 = result["rps_ratio"], result["p99_ratio"]
    print(f"ratio req/s graphpack serve / nuclio: {rps:.2f}x (goal >= {GOAL_RPS}x)" if rps else "ratio req/s: n/a")
    print(f"ratio p99 graphpack serve / nuclio: {p99:.2f}x (goal <= 1.00x)" if p99 else "ratio p99: n/a")
    print("goal " + ("MET" if result["goal_met"] else "MISSED"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server, taking turns (default 3)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warmup seconds per server (default 2)")
    parser.add_argument("--client", choices=["wrk", "python"], default=None,
                        help="load generator (default: wrk when on PATH, else python)")
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    args = parser.parse_args(argv)
    client = args.client or ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and not shutil.which("wrk"):
        print("wrk is not on PATH (Debian: apt-get install wrk); use --client python", file=sys.stderr)
        return 2
    try:
        result = compare(args.duration, args.rounds, args.connections, client, args.warmup)
    except tc.Unavailable as exc:
        print(str(exc), file=sys.stderr)
        return 2
    report(result)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
