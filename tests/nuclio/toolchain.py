"""Obtain the real Nuclio processor, its Python wrapper and the Python the wrapper runs.

Run by the test command's setup step (``python -m tests.nuclio.toolchain``); the tests read
what it recorded. Everything lives under ``$GRAPHPACK_CACHE/nuclio/<version>`` (default
``~/.cache/graphpack``), keyed by version, so a second run takes a second:

- ``bin/processor``: ``CGO_ENABLED=0 go install github.com/nuclio/nuclio/cmd/processor@<version>``
  (Nuclio's tags have no ``v``), with GOBIN and the Go build cache under that directory and the
  module cache under ``$GRAPHPACK_CACHE/go/mod``. That is the only source: when the Go module
  proxy will not serve Nuclio (on this workplace it answers 403 "This module version is not
  available" for github.com/nuclio/nuclio), the processor is unavailable and the tests say so.
- the wrapper: ``pkg/processor/runtime/python/py/_nuclio_wrapper.py`` of that same module (from
  ``go env GOMODCACHE``).
- a virtualenv (``--system-site-packages``, so graphpack's own test dependencies stay visible)
  with the nuclio-sdk and msgpack versions Nuclio pins for its Python 3.11 images.

On success ``toolchain.json`` names the three paths; on failure ``unavailable.txt`` holds the
exact command and error, which the tests give as their skip reason. Nothing from the Nuclio
repository is kept in graphpack's repository.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VERSION = os.environ.get("GRAPHPACK_NUCLIO_VERSION", "1.14.1")
MODULE = "github.com/nuclio/nuclio"
PACKAGE = f"{MODULE}/cmd/processor"
WRAPPER = "pkg/processor/runtime/python/py/_nuclio_wrapper.py"
#: what nuclio 1.14's python images install (py/requirements/common.txt, python3_11.txt)
PYTHON_PINS = ("nuclio-sdk==0.5.13", "msgpack==1.0.8")
GO_TIMEOUT = 40 * 60


def cache_root() -> Path:
    return Path(os.environ.get("GRAPHPACK_CACHE") or Path.home() / ".cache" / "graphpack")


def home(version: str = VERSION) -> Path:
    return cache_root() / "nuclio" / version


class Unavailable(Exception):
    """The processor could not be obtained: the message names the command and its error."""


def _go_env(version: str) -> dict:
    env = dict(os.environ)
    env.update(GOBIN=str(home(version) / "bin"), GOCACHE=str(home(version) / "gocache"),
               GOMODCACHE=str(cache_root() / "go" / "mod"), CGO_ENABLED="0")
    return env


def _run(cmd: list[str], env: dict, cwd: Path | None = None, timeout: float = GO_TIMEOUT) -> str:
    shown = " ".join(cmd) + (f"  (in {cwd})" if cwd else "")
    print(f"$ {shown}", flush=True)
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"`{shown}` did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        error = (proc.stderr or proc.stdout).strip().splitlines()
        raise Unavailable(f"`{shown}` failed: {' | '.join(error[-4:])}")
    return proc.stdout


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise Unavailable("no Go toolchain (`go`) on PATH, needed to build the Nuclio processor")
    return go


def _install_from_proxy(version: str) -> tuple[Path, Path, str]:
    go, env = _go(), _go_env(version)
    _run([go, "install", f"{PACKAGE}@{version}"], env, cwd=home(version))
    info = json.loads(_run([go, "mod", "download", "-json", f"{MODULE}@{version}"], env, cwd=home(version)))
    return home(version) / "bin" / "processor", Path(info["Dir"]) / WRAPPER, f"go install {PACKAGE}@{version}"


def _python() -> Path:
    """A virtualenv with Nuclio's pinned nuclio-sdk and msgpack on top of this Python's packages."""
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}-" + "-".join(p.replace("==", "") for p in PYTHON_PINS)
    venv = cache_root() / "nuclio" / tag
    python = venv / "bin" / "python"
    probe = "import msgpack, nuclio_sdk, importlib.metadata as m; print(m.version('nuclio-sdk'), m.version('msgpack'))"
    if python.exists():
        proc = subprocess.run([str(python), "-c", probe], check=False, capture_output=True, text=True)
        wanted = " ".join(p.split("==")[1] for p in PYTHON_PINS)
        if proc.returncode == 0 and proc.stdout.strip() == wanted:
            return python
    env = dict(os.environ)
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--clear", str(venv)], env, timeout=300)
    _run([str(python), "-m", "pip", "install", "-q", *PYTHON_PINS], env, timeout=600)
    return python


def record_path(version: str = VERSION) -> Path:
    return home(version) / "toolchain.json"


def unavailable_path(version: str = VERSION) -> Path:
    return home(version) / "unavailable.txt"


def load(version: str = VERSION) -> dict:
    """What setup recorded: {"processor", "wrapper", "python", "source", "version"}; raises Unavailable."""
    try:
        record = json.loads(record_path(version).read_text())
    except (OSError, ValueError):
        try:
            reason = unavailable_path(version).read_text().strip()
        except OSError:
            reason = "the setup step (python -m tests.nuclio.toolchain) has not run"
        raise Unavailable(f"Nuclio processor {version} unavailable: {reason}") from None
    missing = [k for k in ("processor", "wrapper", "python") if not Path(record[k]).exists()]
    if missing:
        raise Unavailable(f"Nuclio processor {version}: recorded {', '.join(missing)} no longer exist; "
                          "rerun the setup step")
    return record


def obtain(version: str = VERSION) -> dict:
    """Build (or reuse) the processor, find its wrapper, make the Python; record and return them."""
    home(version).mkdir(parents=True, exist_ok=True)
    try:
        record = load(version)
        record["python"] = str(_python())
        return record
    except Unavailable:
        pass
    try:
        processor, wrapper, source = _install_from_proxy(version)
    except Unavailable as exc:
        unavailable_path(version).write_text(f"{exc}\n")
        raise
    if not wrapper.is_file():
        raise Unavailable(f"{wrapper} is missing from the Nuclio module")
    record = {"version": version, "processor": str(processor), "wrapper": str(wrapper),
              "python": str(_python()), "source": source}
    record_path(version).write_text(json.dumps(record, indent=1) + "\n")
    unavailable_path(version).unlink(missing_ok=True)
    return record


def main() -> int:
    start = time.monotonic()
    try:
        record = obtain()
    except Unavailable as exc:
        print(f"nuclio processor unavailable: {exc}")
        return 3
    print(f"nuclio processor {record['version']}: {record['processor']} ({record['source']}), "
          f"{time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
