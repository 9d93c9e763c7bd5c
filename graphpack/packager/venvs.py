"""Run a built function the way its image does, without an image: a fresh virtual environment
holding only the function's requirements.txt (installed offline from downloaded wheels), and
``python -I`` with nothing on the path but the build context (which carries graphpack's runtime).

Environments are cached under ``$GRAPHPACK_CACHE/venvs/<digest of requirements.txt and the
Python version>``, outside any project, and shared by every function with the same requirements.
"""
from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import GraphpackError
from .images.baseimage import cache_dir
from .images.wheels import download_wheels, requirement_lines

# the image's PYTHONPATH is the function directory; with -I the command puts it there itself
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from graphpack.serve import main; sys.exit(main())"


def venv_python(requirements: str) -> Path:
    """The interpreter of a cached environment with exactly ``requirements`` installed."""
    lines = requirement_lines(requirements)
    key = hashlib.sha256(("\n".join(lines) + f"\n{sys.version_info[:3]}").encode()).hexdigest()[:16]
    root = cache_dir().parent / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    target = root / key
    python = target / "bin" / "python"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").is_file():
            return python
        shutil.rmtree(target, ignore_errors=True)
        _run([sys.executable, "-m", "venv", "--without-pip", str(target)], "creating a virtual environment")
        if lines:
            wheels = download_wheels(lines)
            _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                  "--find-links", str(wheels), "--disable-pip-version-check", "--no-cache-dir", *lines],
                 "installing the function's requirements")
        (target / ".complete").write_text("\n".join(lines) + "\n")
    return python


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise GraphpackError(f"{what} failed: {(result.stderr or result.stdout).strip()[-600:]}")


def serve_command(function_dir: str | Path, *options: str) -> list[str]:
    """The argv that serves ``function_dir`` in its own clean environment (``python -I``)."""
    function_dir = Path(function_dir).resolve()
    python = venv_python((function_dir / "requirements.txt").read_text())
    return [str(python), "-I", "-c", _BOOT, str(function_dir), *options]


__all__ = ["serve_command", "venv_python"]
