"""HTTP benchmark: a 1-step graph through `graphpack serve` (1 worker) vs a bare asyncio HTTP
server doing the same work for the same request (request line and headers parsed, routed on
method and path, JSON body in and out, the same response headers), with the same load generator
(wrk) on loopback, in the same run.

Measures req/s and p50/p99 latency of each (rounds alternate between the servers; medians), the
cold start of each (process start -> first 200, alternating, medians; both with bytecode caches
written, as for installed packages), the resident memory of a worker after start, and how req/s
degrades when a CPU-bound neighbour process shares the machine (graphpack with 2 workers, the
bare server). Information rows: graphpack's HTTP server alone with the bare server's app, and the
minimal echo server that was the baseline before (Content-Length only, no routing). The cost of
metrics (issue 18): graphpack serve with metrics on (the default) against ``--no-metrics`` in the
same rounds (goal: >= 0.95x req/s), and what counting one request costs with graphpack's recorder
and with prometheus-client's multiprocess mode (the reason graphpack records metrics itself).
Ends with a summary, one line per goal (req/s >= 0.8x bare, p99 <= 1.5x, cold start <= 1.3x,
memory <= 40 MB, metrics >= 0.95x): measured ratio, goal, MET/MISSED. The load average is printed
before and after: a ratio measured under load is not a quiet-machine figure; compare ratios of
one run only.

    python bench/http.py                    # 5 s per round, 2 rounds, 16 connections
    python bench/http.py --seconds 2 --rounds 1 --connections 8
    python bench/http.py --markdown         # also the README's performance rows
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
    import asyncio, json, sys, time

    def echo(body, headers):
        return json.dumps(json.loads(body)).encode()

    ROUTES = {("POST", "/"): echo}
    _date = [0, b""]

    def date_line():
        now = int(time.time())
        if now != _date[0]:
            _date[:] = [now, time.strftime("Date: %a, %d %b %Y %H:%M:%S GMT\\r\\n", time.gmtime(now)).encode()]
        return _date[1]

    class Echo(asyncio.Protocol):
        """The least an HTTP/1.1 server does for an app: the request line and every header parsed
        (a dict), Content-Length bodies, keep-alive, routing on method and path (404 otherwise), the
        response headers graphpack sends (Content-Type, Content-Length, Date, Server). No framing
        checks, limits, chunked bodies or pipelining order: what graphpack does on top."""
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""
        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                lines = self.buffer[:end].decode("latin-1").split("\\r\\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", 0))
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4:end + 4 + length]
                self.buffer = self.buffer[end + 4 + length:]
                route = ROUTES.get((method, target.partition("?")[0]))
                if route is None:
                    status, out = b"404 Not Found", b'{"error": "not found"}'
                else:
                    status, out = b"200 OK", route(body, headers)
                self.transport.write(b"HTTP/1.1 %s\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n%s"
                                     b"Server: bare\\r\\n\\r\\n%s" % (status, len(out), date_line(), out))

    async def main(port):
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
        print("ready", flush=True)
        await server.serve_forever()

    asyncio.run(main(int(sys.argv[1])))
''')

#: the baseline before it parsed and routed, kept as an information row (Content-Length only)
MINIMAL_SERVER = textwrap.dedent('''
    import asyncio, json, sys

    class Echo(asyncio.Protocol):
        """Finds Content-Length and answers the JSON body: no request line, headers dict or routing."""
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
    """User + system CPU time of process ``pid`` (all its threads): the scheduler's nanosecond
    count where the kernel has it, else /proc/PID/stat's clock ticks (10 ms steps)."""
    try:
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        pass
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


def cold_start(argv: list[str], cwd: Path) -> tuple[float, float, float]:
    """(ms from process start to the first 200, resident MB of the process then, CPU ms it used
    until then: steadier than the wall clock on a busy machine)."""
    port = free_port()
    proc = start(argv + [str(port)], cwd)
    try:
        ms = wait_ok(f"http://127.0.0.1:{port}") * 1000
        return ms, rss_mb(proc.pid), cpu_seconds(proc.pid) * 1000
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
    parser.add_argument("--markdown", action="store_true", help="also print the README's performance rows")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench/http.py needs wrk: apt-get install -y wrk")

    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="graphpack-bench-http-"))
    try:
        (work / "project.py").write_text(PROJECT)
        (work / "bare.py").write_text(BARE_SERVER)
        (work / "minimal.py").write_text(MINIMAL_SERVER)
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
        cold_cpu: dict[str, list[float]] = {name: [] for name in servers}
        rss: list[float] = []
        for argv_ in servers.values():  # untimed: writes bytecode caches, warms the page cache
            cold_start(argv_, work)
        for _ in range(args.cold_starts):  # alternating, so drifting load hits both alike
            for name, argv_ in servers.items():
                ms, mb, cpu_ms = cold_start(argv_, work)
                cold[name].append(ms)
                cold_cpu[name].append(cpu_ms)
                if name == "graphpack serve":
                    rss.append(mb)

        loaded = {"bare asyncio": servers["bare asyncio"], "front door only": [sys.executable, "front_door.py"],
                  "minimal echo": [sys.executable, "minimal.py"], "graphpack serve": servers["graphpack serve"],
                  "metrics off": servers["graphpack serve"][:-1] + ["--no-metrics", "--port"]}  # back to back
        rounds: dict[str, list[dict]] = {name: [] for name in loaded}
        for turn in range(args.rounds):  # every other round in reverse: no server always runs after the same one
            for name, argv_ in list(loaded.items())[::1 if turn % 2 == 0 else -1]:
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
    load_after = load_average()

    print(f"http bench: 1-step graph, 1 worker, wrk -t1 -c{args.connections} -d{args.seconds:g}s POST {BODY}, "
          f"{args.rounds} round(s) each (medians), load average before: {load_before}, after: {load_after}")
    for name, r in results.items():
        print(f"  {name:<16} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms   "
              f"server CPU {r['cpu_us']:.1f} µs/request"
              + (f"   non-2xx {r['non_2xx']:.0f}" if r["non_2xx"] else ""))
    cold_ms = {name: statistics.median(values) for name, values in cold.items()}
    cpu_ms = {name: statistics.median(values) for name, values in cold_cpu.items()}
    for name, ms in cold_ms.items():
        print(f"  cold start {name:<16} {ms:.0f} ms (process start -> first 200, median of {len(cold[name])}), "
              f"CPU {cpu_ms[name]:.0f} ms")
    rss_med = statistics.median(rss)
    print(f"  resident memory per worker after start: {rss_med:.1f} MB")
    for name, (alone, busy) in crowded.items():
        print(f"  {name} with a CPU-bound neighbour: {alone['rps']:,.0f} -> {busy['rps']:,.0f} req/s "
              f"({busy['rps'] / alone['rps']:.2f}x), p99 {alone['p99_ms']:.2f} -> {busy['p99_ms']:.2f} ms")

    ours, bare = results["graphpack serve"], results["bare asyncio"]
    front, minimal = results["front door only"], results["minimal echo"]
    rps, p99 = ours["rps"] / bare["rps"], ours["p99_ms"] / bare["p99_ms"]
    cold_ratio = cold_ms["graphpack serve"] / cold_ms["bare asyncio"]
    print("summary (graphpack serve / bare asyncio, this run):")
    print("  " + ratio_line("req/s", rps, f">= {GOALS['rps']:g}x", rps >= GOALS["rps"]))
    print("  " + ratio_line("p99 latency", p99, f"<= {GOALS['p99']:g}x", p99 <= GOALS["p99"]))
    print("  " + ratio_line("cold start", cold_ratio, f"<= {GOALS['cold']:g}x", cold_ratio <= GOALS["cold"]))
    # metrics on and off run back to back in every round: the median of the rounds' ratios
    pairs = list(zip(rounds["graphpack serve"], rounds["metrics off"]))
    on_off = statistics.median(on["rps"] / off["rps"] for on, off in pairs)
    print("  " + ratio_line("req/s, metrics on / metrics off (median of the rounds' ratios)", on_off,
                            f">= {GOALS['metrics']:g}x", on_off >= GOALS["metrics"]))
    print(f"  memory per worker: {rss_med:.1f} MB  (goal <= {GOALS['rss_mb']:.0f} MB)  "
          + ("MET" if rss_med <= GOALS["rss_mb"] else "MISSED"))
    print("  " + ratio_line("server CPU per request (bare / graphpack; steadier on a busy machine)",
                            bare["cpu_us"] / ours["cpu_us"]))
    print("  " + ratio_line("CPU until the first answer (graphpack / bare; steadier on a busy machine)",
                            cpu_ms["graphpack serve"] / cpu_ms["bare asyncio"]))
    print("  " + ratio_line("req/s of graphpack's HTTP server alone with the bare app", front["rps"] / bare["rps"]))
    print("  " + ratio_line("req/s against the minimal echo server (the baseline before)", ours["rps"] / minimal["rps"]))
    print("  " + ratio_line("server CPU per request, metrics off / metrics on (median of the rounds' ratios)",
                            statistics.median(off["cpu_us"] / on["cpu_us"] for on, off in pairs)))
    for name, (alone, busy) in crowded.items():
        print("  " + ratio_line(f"req/s with a CPU-bound neighbour / alone, {name}", busy["rps"] / alone["rps"]))
    from _metrics_cost import client_us, graph_us, recorder_us

    graph_off, graph_on = graph_us()
    print(f"  the 1-step graph in process (no HTTP): {graph_off:.2f} µs CPU per event with metrics off, "
          f"{graph_on:.2f} µs with the step timed ({graph_on - graph_off:+.2f} µs)")

    request_us = 1e6 / ours["rps"]
    ours_us, client = recorder_us(), client_us()
    print(f"  counting one request: graphpack's recorder {ours_us:.2f} µs ({ours_us / request_us:.1%} of a request "
          f"at graphpack serve's rate)" + ("" if client is None else
          f", prometheus-client multiprocess mode {client:.2f} µs ({client / request_us:.1%})"))
    if args.markdown:
        print(markdown_rows(results, cold_ms, cpu_ms, on_off, rss_med, crowded, args.connections, load_before,
                            load_after))
    return 0


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def markdown_rows(results: dict, cold_ms: dict, cpu_ms: dict, on_off: float, rss: float, crowded: dict,
                  connections: int, load_before: str, load_after: str) -> str:
    """The README performance table's bench/http.py rows for this run."""
    ours, bare, front = results["graphpack serve"], results["bare asyncio"], results["front door only"]
    minimal, off = results["minimal echo"], results["metrics off"]
    rps, p99 = ours["rps"] / bare["rps"], ours["p99_ms"] / bare["p99_ms"]
    cold = cold_ms["graphpack serve"] / cold_ms["bare asyncio"]
    load = f"load {load_before.split()[0]} -> {load_after.split()[0]}"
    rows = [
        f"| `bench/http.py`: 1-step graph, `graphpack serve`, 1 worker, wrk -c{connections} ({load}) "
        f"| {ours['rps']:,.0f} req/s, p99 {ours['p99_ms']:.2f} ms, server CPU {ours['cpu_us']:.1f} µs/request "
        f"| bare asyncio server (parses, routes, same headers) {bare['rps']:,.0f} req/s, p99 {bare['p99_ms']:.2f} ms, "
        f"{bare['cpu_us']:.1f} µs/request "
        f"| {rps:.2f}x req/s, {p99:.2f}x p99, {ours['cpu_us'] / bare['cpu_us']:.1f}x the CPU per request "
        f"| >= 0.8x req/s ({_verdict(rps >= GOALS['rps'])}), p99 <= 1.5x ({_verdict(p99 <= GOALS['p99'])}) |",
        f"| same, metrics off (`--no-metrics`) | {off['rps']:,.0f} req/s, {off['cpu_us']:.1f} µs/request "
        f"| graphpack serve with metrics on (the default), back to back | metrics on: {on_off:.2f}x req/s "
        f"(median of the rounds' ratios) | >= 0.95x ({_verdict(on_off >= GOALS['metrics'])}) |",
        f"| same, graphpack's HTTP server alone (httptools; the bare server's app, same asyncio loop) "
        f"| {front['rps']:,.0f} req/s, {front['cpu_us']:.1f} µs/request | same bare server "
        f"| {front['rps'] / bare['rps']:.2f}x req/s | |",
        f"| same, against the minimal echo server (Content-Length only, no routing: the baseline before) "
        f"| {ours['rps']:,.0f} req/s | {minimal['rps']:,.0f} req/s, {minimal['cpu_us']:.1f} µs/request "
        f"| {ours['rps'] / minimal['rps']:.2f}x req/s | |",
    ]
    if crowded:
        (two_alone, two_busy), (bare_alone, bare_busy) = crowded["graphpack serve, 2 workers"], crowded["bare asyncio"]
        rows.append(
            f"| same, 2 workers, then with a CPU-bound neighbour process "
            f"| {two_alone['rps']:,.0f} -> {two_busy['rps']:,.0f} req/s ({two_busy['rps'] / two_alone['rps']:.2f}x), "
            f"p99 {two_alone['p99_ms']:.1f} -> {two_busy['p99_ms']:.1f} ms "
            f"| bare server alone -> with the neighbour: {bare_alone['rps']:,.0f} -> {bare_busy['rps']:,.0f} req/s "
            f"({bare_busy['rps'] / bare_alone['rps']:.2f}x) | | |")
    rows += [
        f"| `bench/http.py`: cold start (process start -> first 200, `python -m graphpack.serve`) "
        f"| {cold_ms['graphpack serve']:.0f} ms, {cpu_ms['graphpack serve']:.0f} ms CPU "
        f"| bare asyncio server {cold_ms['bare asyncio']:.0f} ms, {cpu_ms['bare asyncio']:.0f} ms CPU "
        f"| {cold:.2f}x ({cpu_ms['graphpack serve'] / cpu_ms['bare asyncio']:.2f}x the CPU) "
        f"| <= 1.3x ({_verdict(cold <= GOALS['cold'])}) |",
        f"| `bench/http.py`: resident memory per worker after start | {rss:.1f} MB | | "
        f"| <= 40 MB ({_verdict(rss <= GOALS['rss_mb'])}) |",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
