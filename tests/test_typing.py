"""The package type-checks (mypy), so the public API's hints can be trusted."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean(tmp_path):
    cache = Path(os.environ.get("GRAPHPACK_CACHE", Path.home() / ".cache" / "graphpack")) / "mypy"
    proc = subprocess.run([sys.executable, "-m", "mypy", "graphpack", "--ignore-missing-imports",
                           "--cache-dir", str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Success: no issues found" in proc.stdout
