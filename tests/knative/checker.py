"""Build and run the Knative manifest checker (tests/knative/main.go).

The binary is cached under ``$GRAPHPACK_CACHE/knative-check/<key>/`` where the key is a digest of
go.mod, go.sum and main.go, so a second build is instant; the Go module cache is
``$GRAPHPACK_CACHE/go/mod`` (the checker finds the CRDs there with ``go mod download -json``).
``python -m tests.knative.checker`` builds it (the test command's setup step).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("go.mod", "go.sum", "main.go")


def cache_root() -> Path:
    return Path(os.environ.get("GRAPHPACK_CACHE") or Path.home() / ".cache" / "graphpack")


def key() -> str:
    sha = hashlib.sha256()
    for name in SOURCES:
        sha.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return sha.hexdigest()[:16]


def binary() -> Path:
    return cache_root() / "knative-check" / key() / "knative-check"


def go_env() -> dict:
    env = dict(os.environ)
    env.update(GOMODCACHE=str(cache_root() / "go" / "mod"), GOCACHE=str(cache_root() / "knative-check" / "gocache"),
               GOFLAGS="-mod=mod", CGO_ENABLED="0")
    return env


class Unavailable(Exception):
    """The checker cannot be built here (the message says why)."""


def build() -> Path:
    """The checker binary, built when missing."""
    target = binary()
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise Unavailable("no Go toolchain (`go`) on PATH to build tests/knative")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    proc = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=HERE, env=go_env(),
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise Unavailable(f"go build in tests/knative failed: {proc.stderr.strip()[-2000:]}")
    tmp.replace(target)
    return target


def check(*paths: str | Path) -> subprocess.CompletedProcess:
    """Run the checker over manifest files or directories (returncode 0 = all valid)."""
    return subprocess.run([str(build()), *map(str, paths)], env=go_env(), capture_output=True, text=True,
                          timeout=600, check=False)


def main() -> int:
    start = time.monotonic()
    try:
        path = build()
    except Unavailable as exc:
        print(f"knative checker unavailable: {exc}")
        return 3
    print(f"knative checker: {path} ({time.monotonic() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
