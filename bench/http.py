"""HTTP benchmark: a 1-step graph through `graphpack serve` (1 worker) vs a bare asyncio HTTP
server answering the same body, with the same load generator (wrk) on loopback, same run.

Prints req/s and p50/p99 latency for both and their ratio (goal: graphpack >= 0.6x the bare
server), the cold start (process start -> first 200; goal <= 200 ms) and the resident memory of
a worker after start (goal <= 40 MB).

    python bench/http.py                    # 5 s per server, 16 connections
    python bench/http.py --seconds 2 --connections 8
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
GOALS = {"rps": 0.6, "cold_ms": 200.0, "rss_mb": 40.0}

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
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(errors.group(1)) if errors else 0}


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per server")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--cold-starts", type=int, default=5, help="cold starts to time (median)")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("bench/http.py needs wrk: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="graphpack-bench-http-"))
    try:
        (work / "project.py").write_text(PROJECT)
        (work / "bare.py").write_text(BARE_SERVER)
        script = work / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "build",
                        "--target", "local"], cwd=work, check=True, capture_output=True)
        function_dir = work / "build" / "echo"
        serve = [sys.executable, "-m", "graphpack.cli", "serve", str(function_dir), "--port"]

        cold, rss = [], []
        for _ in range(args.cold_starts):
            port = free_port()
            proc = start(serve + [str(port)], work)
            cold.append(wait_ok(f"http://127.0.0.1:{port}") * 1000)
            rss.append(rss_mb(proc.pid))
            stop(proc)

        results = {}
        for name, argv_ in (("bare asyncio", [sys.executable, "bare.py"]), ("graphpack serve", serve)):
            port = free_port()
            proc = start(argv_ + [str(port)], work)
            try:
                wait_ok(f"http://127.0.0.1:{port}")
                wrk(f"http://127.0.0.1:{port}/", 1, args.connections, script)  # warm up
                results[name] = wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections, script)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"http bench: 1-step graph, 1 worker, wrk -t1 -c{args.connections} -d{args.seconds:g}s POST {BODY}")
    for name, r in results.items():
        print(f"  {name:<16} {r['rps']:>10,.0f} req/s   p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms"
              + (f"   non-2xx {r['non_2xx']}" if r["non_2xx"] else ""))
    cold_ms, rss_med = statistics.median(cold), statistics.median(rss)
    print(f"  cold start (process start -> first 200): {cold_ms:.0f} ms (median of {len(cold)})")
    print(f"  resident memory per worker after start: {rss_med:.1f} MB")
    ratio = results["graphpack serve"]["rps"] / results["bare asyncio"]["rps"]
    print(ratio_line("graphpack serve / bare asyncio (req/s)", ratio, f">= {GOALS['rps']:g}x", ratio >= GOALS["rps"]))
    p99_ratio = results["graphpack serve"]["p99_ms"] / results["bare asyncio"]["p99_ms"]
    print(ratio_line("graphpack serve / bare asyncio (p99 latency)", p99_ratio))
    print(f"cold start: {cold_ms:.0f} ms  (goal <= {GOALS['cold_ms']:.0f} ms)  "
          + ("MET" if cold_ms <= GOALS["cold_ms"] else "MISSED"))
    print(f"memory per worker: {rss_med:.1f} MB  (goal <= {GOALS['rss_mb']:.0f} MB)  "
          + ("MET" if rss_med <= GOALS["rss_mb"] else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
