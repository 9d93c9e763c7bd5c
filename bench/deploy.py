"""Deploy benchmark: seconds from `graphpack deploy --target T` to the first successful invoke, for a
root + one child joined by a file queue, on the local target and on the real Nuclio 1.14.1 dashboard
(--platform local, Docker engine, a loopback registry, graphpack's daemonless image builder).

Nuclio is measured twice: cold (images built and pushed, containers started) and warm (the same
project deployed again after `graphpack down`: unchanged layers, nothing pushed twice). The child
must also have consumed the event the root queued (checked, not timed).

    python bench/deploy.py                  # local + nuclio
    python bench/deploy.py --targets local
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
# run as a script, bench/ is on sys.path: keep bench/http.py from shadowing the standard library
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]

PROJECT = textwrap.dedent('''
    import graphpack

    project = graphpack.get_or_create_project("benchdeploy", "./")
    fn = project.set_function("serving.py", name="root")
    graph = fn.set_topology("flow", engine="async")
    graph.to(class_name="Pre", name="pre").respond().to(">>", "q1", path=QUEUE) \\
        .to(class_name="Score", name="score", function="child")
    fn.add_child_function("child", "child.py")
    fn.set_env("OUT_DIR", OUT_DIR)
    fn.with_http(workers=1, port=PORT)
''')
ROOT = '''
class Pre:
    def do(self, body):
        body["pre"] = True
        return body
'''
CHILD = '''
import json, os

class Score:
    def do(self, body):
        with open(os.path.join(os.environ["OUT_DIR"], "scored.jsonl"), "a") as f:
            f.write(json.dumps(body) + "\\n")
        return body
'''


def make_project(directory: Path, shared: Path, port: int | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    shared.chmod(0o777)
    (directory / "serving.py").write_text(ROOT)
    (directory / "child.py").write_text(CHILD)
    head = f"QUEUE = {str(shared / 'q1')!r}\nOUT_DIR = {str(shared)!r}\nPORT = {port!r}\n"
    (directory / "project.py").write_text(head + PROJECT)
    return directory / "project.py"


def graphpack(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphpack.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def deploy_to_first_invoke(target: str, source: Path, env: dict, shared: Path) -> dict:
    """Run `graphpack deploy`, then invoke the root until it answers 200; the child must consume."""
    from graphpack.packager.deploy import get_deployer

    scored = shared / "scored.jsonl"
    scored.unlink(missing_ok=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "graphpack.cli", "deploy", "-f", str(source), "--target",
                                target], cwd=source.parent, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    for line in process.stderr:  # type: ignore[union-attr]
        lines.append((time.perf_counter() - start, line.rstrip()))
    process.wait(900)
    deployed = time.perf_counter()
    if process.returncode:
        raise SystemExit(f"deploy --target {target} failed:\n" + "\n".join(t for _, t in lines[-40:]))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deployer = get_deployer(target, source.parent)
        while True:
            result = deployer.invoke("root", "/", {"n": 1}, timeout=30)
            if result.ok:
                break
            if time.perf_counter() - deployed > 120:
                raise SystemExit(f"{target}: no successful invoke within 120 s: {result.status_code} {result.body}")
            time.sleep(0.05)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    first = time.perf_counter()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (scored.exists() and scored.read_text().strip()):
        time.sleep(0.05)
    consumed = scored.exists() and bool(scored.read_text().strip())
    marks = {}
    for stamp, text in lines:
        for key, needle in (("images_built_s", "creating Nuclio function"), ("child_ready_s", "child is ready"),
                            ("child_ready_s", "-child: info: Function deploy complete"),
                            ("root_ready_s", "root is ready"), ("root_ready_s", "-root: info: Function deploy complete")):
            if needle in text and key not in marks:
                marks[key] = round(stamp, 2)
    return {"deploy_s": deployed - start, "first_invoke_s": first - start, "child_consumed": consumed, **marks}


def bench_local(work: Path) -> dict:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    shared = work / "local-shared"
    source = make_project(work / "local", shared, port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        return deploy_to_first_invoke("local", source, env, shared)
    finally:
        graphpack("down", "--target", "local", "--purge", "-C", str(source.parent), cwd=source.parent, env=env)


def bench_nuclio(work: Path) -> dict:
    from graphpack.packager.images.testing import run_registry
    from tests.packager.deploy import nuclio_dashboard

    shared = work / "nuclio-shared"
    source = make_project(work / "nuclio", shared, None)
    results = {}
    with run_registry() as registry, nuclio_dashboard.running_dashboard(work / "dashboard") as url:
        env = {**os.environ, "PYTHONPATH": str(REPO), "NUCLIO_DASHBOARD_URL": url,
               "GRAPHPACK_REGISTRY": f"{registry.host}/bench", "GRAPHPACK_NUCLIO_PLATFORM": "local",
               "GRAPHPACK_NUCLIO_HOST_PATHS": str(shared)}
        for run in ("cold", "warm"):
            try:
                results[run] = deploy_to_first_invoke("nuclio", source, env, shared)
            finally:
                down = graphpack("down", "--target", "nuclio", "-C", str(source.parent), cwd=source.parent, env=env)
                if down.returncode:
                    print(f"down failed: {down.stderr[-500:]}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="local,nuclio", help="comma-separated: local, nuclio")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="graphpack-bench-deploy-") as tmp:
        work = Path(tmp)
        if "local" in targets:
            figures["local"] = bench_local(work)
        if "nuclio" in targets:
            figures["nuclio"] = bench_nuclio(work)
    print("deploy -> first successful invoke (root + one child, file queue):")
    if "local" in figures:
        f = figures["local"]
        print(f"  local           {f['first_invoke_s']:7.2f} s  (deploy command {f['deploy_s']:.2f} s, "
              f"child consumed: {f['child_consumed']})")
    for run, f in (figures.get("nuclio") or {}).items():
        print(f"  nuclio ({run:<4})   {f['first_invoke_s']:7.2f} s  (deploy command {f['deploy_s']:.2f} s: images "
              f"built+pushed at {f.get('images_built_s', '?')} s, child ready at {f.get('child_ready_s', '?')} s, "
              f"root ready at {f.get('root_ready_s', '?')} s; child consumed: {f['child_consumed']})")
    if "local" in figures and "nuclio" in figures:
        print(f"  nuclio cold / local: {figures['nuclio']['cold']['first_invoke_s'] / figures['local']['first_invoke_s']:.1f}x")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
