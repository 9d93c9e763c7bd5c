"""The MLRun venv the differential test runs its reference side in.

``$GRAPHPACK_CACHE/mlrun-venv-<version>`` (outside the repo), created on demand with the
pinned mlrun + storey from PyPI and reused after that; scripts/test.sh creates it as a setup
step (``python -m tests.compat.mlrun_venv``: exit 0 with the path, exit 3 with the reason when
it cannot be had, e.g. no package index).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

MLRUN_VERSION = "1.12.1"
PACKAGES = [f"mlrun=={MLRUN_VERSION}", "storey==1.12.6"]
CACHE = Path(os.environ.get("GRAPHPACK_CACHE", Path.home() / ".cache" / "graphpack"))
VENV = CACHE / f"mlrun-venv-{MLRUN_VERSION}"
STAMP = VENV / ".installed"


class Unavailable(RuntimeError):
    """The venv could not be created (the message says why)."""


def python() -> Path:
    return VENV / "bin" / "python"


def ready() -> bool:
    return STAMP.exists() and python().exists() and STAMP.read_text().split() == PACKAGES


def ensure() -> Path:
    """The venv's python, creating the venv first when needed."""
    if ready():
        return python()
    if not python().exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
    proc = subprocess.run([str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           "--cache-dir", str(CACHE / "pip"), *PACKAGES], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"pip install {' '.join(PACKAGES)} into {VENV} failed: "
                          + (proc.stderr.strip().splitlines() or ["?"])[-1])
    STAMP.write_text(" ".join(PACKAGES) + "\n")
    return python()


def child_env() -> dict[str, str]:
    """Environment for the MLRun side: offline (no MLRUN_DBPATH), quiet, no graphpack on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLRUN_DBPATH")}
    env["MLRUN_LOG_LEVEL"] = "ERROR"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


if __name__ == "__main__":
    start = time.monotonic()
    was_ready = ready()
    try:
        path = ensure()
    except (Unavailable, subprocess.CalledProcessError) as exc:
        print(f"mlrun venv unavailable: {exc}")
        sys.exit(3)
    print(f"mlrun {MLRUN_VERSION} venv {'present' if was_ready else 'created'} in "
          f"{time.monotonic() - start:.0f}s: {path}")
