"""HTTP benchmark: a 1-step graph through `graphpack serve` (1 worker) vs a bare asyncio HTTP
server answering the same body, with the same load generator (wrk) on loopback, same run.

Prints req/s and p50/p99 latency for both (rounds alternate between the two servers, medians
reported) and the ratios (goals: req/s >= 0.8x the bare server, p99 <= 1.5x), the cold start
of each (process start -> first 200, alternating, medians; goal: graphpack <= 1.3x the bare
server's; both with bytecode caches written, as for installed packages), the resident memory of a worker after start (goal <= 40 MB), and how req/s degrades
when a CPU-bound neighbour process shares the machine (graphpack with 2 workers, the bare
server). The machine's load average is printed at the start and the end: a ratio measured
under load is not a quiet-machine figure. The cost of metrics (issue 18): graphpack serve with
metrics on (the default) against ``--no-metrics`` in the same rounds (goal: >= 0.95x req/s), and
what counting one request costs with graphpack's recorder and with prometheus-client's
multiprocess mode (the reason graphpack records metrics itself).

    python bench/http.py                    # 5 s per round, 2 rounds, 16 connections
    python bench/http.py --seconds 2 --rounds 1 --connections 8
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# this file is bench/http.py: keep it from shadowing the standard library's http package
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
import http.client  # noqa: E402

sys.path.append(str(BENCH))
from _harness import ratio_line  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BODY = '{"inputs": [1, 2, 3]}'
GOALS = {"rps": 0.8, "p99": 1.5, "cold": 1.3, "rss_mb": 40.0, "metrics": 0.95}
NEIGHBOUR = "while True: pass"  # a CPU-bound process sharing the machine

BARE_SERVER = textwrap.dedent('''
    import asyncio, json, sys

    class Echo(asyncio.Protocol):
        """Minimal HTTP/1.1: headers, Content-Length body, keep-alive; answers the JSON body."""
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""
        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1").lower()
                length = 0
                for line in head.split("\\r\\n")[1:]:
                    if line.startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4:end + 4 + length]
                self.buffer = self.buffer[end + 4 + length:]
                out = json.dumps(json.loads(body)).encode()
                self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: "
                                     + str(len(out)).encode() + b"\\r\\n\\r\\n" + out)

    async def main(port):
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        print("ready", flush=True)
        await server.serve_forever()

    asyncio.run(main(int(sys.argv[1])))
''')

FRONT_DOOR = textwrap.dedent('''
    import asyncio, json, socket, sys

    from graphpack.runtime.http_server import HttpServer

    def app(request):
        """The bare server's work: answer the JSON body re-encoded."""
        return 200, "application/json", {}, json.dumps(json.loads(request.body)).encode()

    async def main(port):
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        sock.setblocking(False)
        await HttpServer(app).start(sock)
        await asyncio.Event().wait()

    asyncio.run(main(int(sys.argv[1])))
''')

PROJECT = textwrap.dedent('''
    import graphpack

    # graphpack: start
    def echo(body):
        return body
    # graphpack: end

    project = graphpack.get_or_create_project("bench", ".")
    fn = project.set_function("project.py", name="echo")
    fn.set_topology("flow", engine="sync").to(handler="echo", name="echo").respond()
    fn.with_http(workers=1)
''')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ok(url: str, timeout: float = 30.0) -> float:
    """Seconds until ``url`` answers POST BODY with 200."""
    start = time.perf_counter()
    host, port = url.split("//")[1].split(":")
    while time.perf_counter() - start < timeout:
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=1)
            conn.request("POST", "/", BODY, {"Content-Type": "application/json"})
            if conn.getresponse().status == 200:
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.002)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url: str, seconds: float, connections: int, script: Path) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(errors.group(1)) if errors else 0,
            "requests": requests}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: servers cache bytecode as installed packages do (an untimed first start writes graphpack's .pyc)
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cold_start(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(ms from process start to the first 200, resident MB of the process then)."""
    port = free_port()
    proc = start(argv + [str(port)], cwd)
    try:
        return wait_ok(f"http://127.0.0.1:{port}") * 1000, rss_mb(proc.pid)
    finally:
        stop(proc)


def load(argv: list[str], cwd: Path, seconds: float, connections: int, script: Path) -> dict:
    """wrk against a fresh server process (after a 1 s warm-up)."""
    port = free_port()
    proc = start(argv + [str(port)], cwd)
    try:
        wait_ok(f"http://127.0.0.1:{port}")
        wrk(f"http://127.0.0.1:{port}/", 1, connections, script)
        before = cpu_seconds(proc.pid)
        result = wrk(f"http://127.0.0.1:{port}/", seconds, connections, script)
        result["cpu_us"] = (cpu_seconds(proc.pid) - before) * 1e6 / max(result["requests"], 1)  # 1 process only
        return result
    finally:
        stop(proc)


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per round and server")
    parser.add_argument("--rounds", type=int, default=2, help="load rounds per server (alternating; medians)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--cold-starts", type=int, default=7, help="cold starts to time per server (median)")
    parser.add_argument("--no-neighbour", action="store_true", help="skip the CPU-bound neighbour runs")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench/http.py needs wrk: apt-get install -y wrk")

    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="graphpack-bench-http-"))
    try:
        (work / "project.py").write_text(PROJECT)
        (work / "bare.py").write_text(BARE_SERVER)
        (work / "front_door.py").write_text(FRONT_DOOR)
        script = work / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "build",
                        "--target", "local"], cwd=work, check=True, capture_output=True)
        function_dir = work / "build" / "echo"
        servers = {"bare asyncio": [sys.executable, "bare.py"],
                   "graphpack serve": [sys.executable, "-m", "graphpack.serve", str(function_dir), "--port"]}

        cold: dict[str, list[float]] = {name: [] for name in servers}
        rss: list[float] = []
        for argv_ in servers.values():  # untimed: writes bytecode caches, warms the page cache
            cold_start(argv_, work)
        for _ in range(args.cold_starts):  # alternating, so drifting load hits both alike
            for name, argv_ in servers.items():
                ms, mb = cold_start(argv_, work)
                cold[name].append(ms)
                if name == "graphpack serve":
                    rss.append(mb)

        loaded = {**servers, "metrics off": servers["graphpack serve"][:-1] + ["--no-metrics", "--port"],
                  "front door only": [sys.executable, "front_door.py"]}
        rounds: dict[str, list[dict]] = {name: [] for name in loaded}
        for _ in range(args.rounds):
            for name, argv_ in loaded.items():
                rounds[name].append(load(argv_, work, args.seconds, args.connections, script))
        results = {name: median_of(runs) for name, runs in rounds.items()}

        crowded: dict[str, tuple[dict, dict]] = {}
        if not args.no_neighbour:
            two = servers["graphpack serve"][:-1] + ["--workers", "2", "--port"]
            for name, argv_ in (("graphpack serve, 2 workers", two), ("bare asyncio", servers["bare asyncio"])):
                alone = load(argv_, work, args.seconds, args.connections, script)
                neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
                try:
                    crowded[name] = (alone, load(argv_, work, args.seconds, args.connections, script))
                finally:
                    neighbour.kill()
                    neighbour.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"http bench: 1-step graph, 1 worker, wrk -t1 -c{args.connections} -d{args.seconds:g}s POST {BODY}, "
          f"{args.rounds} round(s) each, load average before: {load_before}")
    for name, r in results.items():
        print(f"  {name:<16} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms   "
              f"server CPU {r['cpu_us']:.1f} µs/request"
              + (f"   non-2xx {r['non_2xx']:.0f}" if r["non_2xx"] else ""))
    cold_ms = {name: statistics.median(values) for name, values in cold.items()}
    for name, ms in cold_ms.items():
        print(f"  cold start {name:<16} {ms:.0f} ms (process start -> first 200, median of {len(cold[name])})")
    rss_med = statistics.median(rss)
    print(f"  resident memory per worker after start: {rss_med:.1f} MB")
    for name, (alone, busy) in crowded.items():
        print(f"  {name} with a CPU-bound neighbour: {alone['rps']:,.0f} -> {busy['rps']:,.0f} req/s "
              f"({busy['rps'] / alone['rps']:.2f}x), p99 {alone['p99_ms']:.2f} -> {busy['p99_ms']:.2f} ms")
    ours, bare = results["graphpack serve"], results["bare asyncio"]
    print(ratio_line("graphpack's HTTP server with the bare server's app, same asyncio loop / bare (req/s)",
                     results["front door only"]["rps"] / bare["rps"]))
    ratio = ours["rps"] / bare["rps"]
    print(ratio_line("graphpack serve / bare asyncio (req/s)", ratio, f">= {GOALS['rps']:g}x", ratio >= GOALS["rps"]))
    print(ratio_line("bare asyncio / graphpack serve (server CPU per request; steadier on a busy machine)",
                     bare["cpu_us"] / ours["cpu_us"]))
    p99_ratio = ours["p99_ms"] / bare["p99_ms"]
    print(ratio_line("graphpack serve / bare asyncio (p99 latency)", p99_ratio, f"<= {GOALS['p99']:g}x",
                     p99_ratio <= GOALS["p99"]))
    cold_ratio = cold_ms["graphpack serve"] / cold_ms["bare asyncio"]
    print(ratio_line("graphpack serve / bare asyncio (cold start)", cold_ratio, f"<= {GOALS['cold']:g}x",
                     cold_ratio <= GOALS["cold"]))
    off = results["metrics off"]
    print(ratio_line("graphpack serve, metrics on / metrics off (req/s)", ours["rps"] / off["rps"],
                     f">= {GOALS['metrics']:g}x", ours["rps"] / off["rps"] >= GOALS["metrics"]))
    print(ratio_line("metrics off / metrics on (server CPU per request)", off["cpu_us"] / ours["cpu_us"]))
    from _metrics_cost import client_us, recorder_us

    request_us = 1e6 / ours["rps"]
    ours_us, client = recorder_us(), client_us()
    print(f"counting one request: graphpack's recorder {ours_us:.2f} µs ({ours_us / request_us:.1%} of a request "
          f"at graphpack serve's rate)" + ("" if client is None else
          f", prometheus-client multiprocess mode {client:.2f} µs ({client / request_us:.1%})"))
    print(f"memory per worker: {rss_med:.1f} MB  (goal <= {GOALS['rss_mb']:.0f} MB)  "
          + ("MET" if rss_med <= GOALS["rss_mb"] else "MISSED"))
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
