"""What a function's image costs: its size and the import time of its command, for this tree and
for an earlier revision (``--before REV``, default: the last commit before the runtime-only image),
measured in the same run; and this tree's command against the same processor started through the
CLI (what the image ran before), so that the processor's own changes do not blur the comparison.

For each tree, one echo function is built with that tree's packager and daemonless builder (no
push; graphpack's cached base image): the image's size (compressed layers) and its function layers
(requirements + code, above the base); then the command's imports (the module the image's CMD
runs, the processor and the entry module) timed in fresh ``python -I`` processes in the build
context, median of --repeats.

    python bench/footprint.py [--before REV] [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "ce0bf56"

MEASURE = r'''
import json, os, subprocess, sys, textwrap
from pathlib import Path

import graphpack
from graphpack.packager import build_project
from graphpack.packager.images import baseimage
from graphpack.packager.images.daemonless import OCIBuilder
from graphpack.packager.images.pipeline import add_wheels

work, repeats = Path(sys.argv[1]), int(sys.argv[2])
(work / "serving.py").write_text("class Echo:\n    def do(self, body):\n        return body\n")
project = graphpack.get_or_create_project("footprint", str(work))
fn = project.set_function(str(work / "serving.py"), name="echo")
fn.set_topology("flow", engine="sync").to(class_name="Echo", name="echo").respond()
os.chdir(work)
build_project(project, work / "build", target="docker")
context = work / "build" / "echo"
add_wheels(context, lambda message: None)
base = baseimage.build_base(lambda message: None)
image = OCIBuilder(base=base, push=False).assemble(context)
own = image.layers[len(base.layers):]
command = "graphpack.cli" if (context / "bin" / "graphpack").exists() else "graphpack.serve"


def import_time(module, path):
    probe = (f"import sys, time; sys.path[:0] = {path!r}; t = time.perf_counter(); "
             f"import {module}, graphpack.runtime.processor, graphpack_entry; print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-I", "-c", probe], cwd=context, capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    return sorted(times)[len(times) // 2]


tree = os.environ["PYTHONPATH"]
print(json.dumps({"image": sum(layer.size for layer in image.layers), "function_layers": sum(l.size for l in own),
                  "requirements": (context / "requirements.txt").read_text().split(), "command": command,
                  "import_s": import_time(command, ["."]),
                  # the same tree's processor started through the CLI, as the image did before
                  "cli_import_s": import_time("graphpack.cli", [tree, "."])}))
'''


def measure(tree: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="graphpack-footprint-") as work:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run([sys.executable, "-c", MEASURE, work, str(repeats)], env=env, capture_output=True,
                             text=True, cwd=work)
        if out.returncode:
            raise SystemExit(f"measuring {tree} failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help=f"the revision to compare with (default {BEFORE})")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graphpack-before-") as before_dir:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", before_dir, args.before],
                       check=True, capture_output=True)
        try:
            results = {"before": measure(Path(before_dir), args.repeats), "after": measure(ROOT, args.repeats)}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", before_dir], capture_output=True)
    for name, r in results.items():
        print(f"{name:6} image {r['image'] / 1e6:6.2f} MB (function layers {r['function_layers'] / 1e6:5.2f} MB)  "
              f"import of {r['command']} + processor + entry {r['import_s'] * 1000:6.1f} ms  "
              f"requirements: {' '.join(r['requirements'])}")
    b, a = results["before"], results["after"]
    print(f"after, the same processor started through graphpack.cli: {a['cli_import_s'] * 1000:6.1f} ms "
          f"(ratio serve/cli {a['import_s'] / a['cli_import_s']:.3f}x)")
    print(f"ratio after/before: image {a['image'] / b['image']:.3f}x, function layers "
          f"{a['function_layers'] / b['function_layers']:.3f}x, import time {a['import_s'] / b['import_s']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
