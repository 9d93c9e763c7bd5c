"""Peer runtimes for benchmarks: MLRun (+ storey) in a venv of its own, bench/.venv-peers.

The venv is created on first use (a big install, about a minute with a warm pip cache)
and reused after that. Code runs there in a child process; the child prints its figures
with ``_harness.emit_result`` and :func:`run_script` / :func:`run_snippet` return them.
MLRun's mock server runs offline as long as MLRUN_DBPATH is unset (it only warns).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _harness import Worker, read_result  # bench/ is on sys.path: peers is imported by bench scripts

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".venv-peers"
PEER_PACKAGES = {"mlrun": ["mlrun", "storey"]}
PIP_CACHE = Path(os.environ.get("GRAPHPACK_CACHE", Path.home() / ".cache" / "graphpack")) / "pip"


def venv_python() -> Path:
    """The peer venv's python executable."""
    return VENV_DIR / "bin" / "python"


def _stamp(peer: str) -> Path:
    return VENV_DIR / f".installed-{peer}"


def ensure_peer(peer: str, quiet: bool = False) -> Path:
    """Create bench/.venv-peers with the peer's packages if missing; return its python."""
    if peer not in PEER_PACKAGES:
        raise ValueError(f"unknown peer {peer!r}; known: {', '.join(sorted(PEER_PACKAGES))}")
    packages = PEER_PACKAGES[peer]
    stamp = _stamp(peer)
    if stamp.exists() and venv_python().exists() and stamp.read_text().split() == packages:
        return venv_python()
    start = time.monotonic()
    if not quiet:
        print(f"peers: installing {' '.join(packages)} into {VENV_DIR} (first run only) ...", flush=True)
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "--cache-dir", str(PIP_CACHE)]
    result = subprocess.run(pip + packages, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"installing {packages} into {VENV_DIR} failed:\n{result.stdout[-3000:]}"
                           f"{result.stderr[-3000:]}")
    stamp.write_text(" ".join(packages) + "\n")
    if not quiet:
        print(f"peers: {peer} ready in {time.monotonic() - start:.0f}s", flush=True)
    return venv_python()


def peer_env() -> dict[str, str]:
    """Environment for a peer child: offline MLRun, quiet logs."""
    env = dict(os.environ)
    env.pop("MLRUN_DBPATH", None)
    env.pop("PYTHONPATH", None)
    env.setdefault("MLRUN_LOG_LEVEL", "ERROR")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# Children run with -P (no script dir or cwd first on sys.path) so bench/http.py and the like
# cannot shadow the standard library; bench/ is appended for _harness.
_SNIPPET_PREAMBLE = f"import sys; sys.path.append({str(BENCH_DIR)!r})\n"


def run_script(peer: str, script: Path | str, args: list[str], timeout: float = 1800) -> dict:
    """Run a bench script with the peer's python and return the result it emitted."""
    python = ensure_peer(peer)
    proc = subprocess.run([str(python), "-P", str(script), *args], capture_output=True, text=True,
                          env=peer_env(), cwd=str(BENCH_DIR), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} run of {script} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return read_result(proc.stdout)


def run_snippet(peer: str, code: str, timeout: float = 1800) -> dict:
    """Run Python source in the peer venv; it must call ``_harness.emit_result``."""
    python = ensure_peer(peer)
    proc = subprocess.run([str(python), "-P", "-c", _SNIPPET_PREAMBLE + code], capture_output=True,
                          text=True, env=peer_env(), cwd=str(BENCH_DIR), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{peer} snippet failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return read_result(proc.stdout)


def start_worker(peer: str, script: Path | str, args: list[str], label: str | None = None) -> Worker:
    """Start ``script args`` with the peer's python as a :class:`_harness.Worker`."""
    python = ensure_peer(peer)
    return Worker(label or peer, [str(python), "-P", str(script), *args], env=peer_env(), cwd=str(BENCH_DIR))


if __name__ == "__main__":  # `python bench/peers.py mlrun` prepares the venv
    for name in sys.argv[1:] or ["mlrun"]:
        print(ensure_peer(name))
