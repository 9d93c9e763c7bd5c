"""bench/images.py runs end to end (one run) and prints its seconds, ratios and goal lines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_images_bench_quick_run() -> None:
    import docker

    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (scripts/test.sh installs it)")
    try:
        docker.from_env().close()
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=30)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"the Docker engine is not reachable ({exc}); scripts/test.sh starts dockerd")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "images.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^cold build\s+daemonless \(build\+push\)\s+[0-9.]+s\s+docker build --no-cache\s+[0-9.]+s$",
                     out, re.M), out
    assert re.search(r"^ratio code-only docker/daemonless \(daemonless includes the push\): [0-9.]+x  "
                     r"\(goal >= 10x\)  (MET|MISSED)$", out, re.M), out
    assert re.search(r"^goal code-only rebuild <= 0.3s: [0-9.]+s  (MET|MISSED)$", out, re.M), out
    assert re.search(r"^goal cold build with cached base <= 5.0s: [0-9.]+s  (MET|MISSED)$", out, re.M), out
