"""The real Nuclio dashboard for tests and bench/deploy.py: obtain the binary, make the store image,
run it with ``--platform local`` on the Docker engine.

- binary: ``CGO_ENABLED=0 go install github.com/nuclio/nuclio/cmd/dashboard@<version>`` (tags have no
  ``v``) into ``$GRAPHPACK_CACHE/nuclio/<version>/bin`` (``python -m tests.packager.deploy.nuclio_dashboard``,
  a setup step). That is the only source: when the Go module proxy will not serve Nuclio (here it
  answers 403 "This module version is not available"), the dashboard is unavailable and the tests say so.
- store image: the local platform keeps function records in a volume through a container of
  ``gcr.io/iguazio/alpine:3.20`` (which cannot be pulled here); a busybox rootfs imported under that
  name has what it runs (sh, cat, sleep, stat, rm, mkdir, base64, install).
- run: ``--platform local --external-ip-addresses 127.0.0.1 --templates-archive-address=`` on a free
  loopback port, with a platform config moving its web-admin / health ports off 8080-8082.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VERSION = os.environ.get("GRAPHPACK_NUCLIO_VERSION", "1.14.1")
MODULE = "github.com/nuclio/nuclio"
STORE_IMAGE = "gcr.io/iguazio/alpine:3.20"
STORE_TOOLS = ("sh", "cat", "sleep", "stat", "rm", "mkdir", "base64", "install", "ls", "echo")
STORE_CONTAINER = "nuclio-local-storage-reader"
STORE_VOLUME = "nuclio-local-storage"
PLATFORM_CONFIG = """kind: local
webAdmin: {enabled: true, listenAddress: "127.0.0.1:%(admin)d"}
healthCheck: {enabled: true, listenAddress: "127.0.0.1:%(health)d"}
logger:
  sinks: {stdout: {kind: stdout}}
  system: [{level: debug, sink: stdout}]
  functions: [{level: debug, sink: stdout}]
"""


class Unavailable(Exception):
    """A part the real dashboard needs is missing (the message names it and why)."""


def cache_root() -> Path:
    return Path(os.environ.get("GRAPHPACK_CACHE") or Path.home() / ".cache" / "graphpack")


def home() -> Path:
    return cache_root() / "nuclio" / VERSION


def binary() -> Path:
    return home() / "bin" / "dashboard"


def _run(cmd: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 2400) -> str:
    shown = " ".join(cmd) + (f"  (in {cwd})" if cwd else "")
    print(f"$ {shown}", flush=True)
    try:
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"`{shown}` did not finish within {timeout:.0f}s") from None
    if proc.returncode:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise Unavailable(f"`{shown}` failed: {' | '.join(lines[-4:])}")
    return proc.stdout


def obtain() -> Path:
    """The dashboard binary, built when missing (see the module docstring)."""
    target = binary()
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise Unavailable("no Go toolchain (`go`) on PATH to build the Nuclio dashboard")
    home().mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(home() / "bin"), "GOCACHE": str(home() / "gocache"),
           "GOMODCACHE": str(cache_root() / "go" / "mod"), "CGO_ENABLED": "0"}
    _run([go, "install", f"{MODULE}/cmd/dashboard@{VERSION}"], env, cwd=home())
    return target


def docker_ok() -> None:
    if shutil.which("docker") is None:
        raise Unavailable("no `docker` CLI (the local platform shells out to it)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        raise Unavailable("the Docker engine is not running (`docker info` fails)")


def store_image() -> str:
    """Make ``gcr.io/iguazio/alpine:3.20`` from the host's static busybox, once."""
    docker_ok()
    probe = subprocess.run(["docker", "image", "inspect", STORE_IMAGE], capture_output=True, check=False)
    if probe.returncode == 0:
        return STORE_IMAGE
    busybox = shutil.which("busybox")
    if busybox is None:
        raise Unavailable("no static busybox (Debian busybox-static) to make the dashboard's store image")
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(busybox, "bin/busybox")
            for tool in STORE_TOOLS:
                info = tarfile.TarInfo(f"bin/{tool}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
            info = tarfile.TarInfo("tmp")
            info.type, info.mode = tarfile.DIRTYPE, 0o1777
            tar.addfile(info)
        _run(["docker", "import", "-c", 'CMD ["/bin/sh"]', str(tar_path), STORE_IMAGE])
    return STORE_IMAGE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reset_store() -> None:
    """Remove the store container and volume (function records of earlier runs)."""
    subprocess.run(["docker", "rm", "-f", STORE_CONTAINER], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", "-f", STORE_VOLUME], capture_output=True, check=False)


@contextmanager
def running_dashboard(log_dir: str | Path | None = None) -> Iterator[str]:
    """Start the dashboard on 127.0.0.1:<free port>; yields its URL; stops it and cleans up."""
    import httpx

    path = obtain()
    store_image()
    reset_store()
    work = Path(log_dir or tempfile.mkdtemp(prefix="graphpack-dashboard-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "platform.yaml"
    config.write_text(PLATFORM_CONFIG % {"admin": _free_port(), "health": _free_port()})
    port = _free_port()
    log = open(work / "dashboard.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen([str(path), "--platform", "local", "--listen-addr", f"127.0.0.1:{port}",
                                "--external-ip-addresses", "127.0.0.1", "--templates-archive-address=",
                                "--platform-config", str(config), "--offline", "--no-pull"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise Unavailable(f"the dashboard exited ({process.returncode}): "
                                  + (work / "dashboard.log").read_text(errors="replace")[-1500:])
            try:
                if httpx.get(url + "/api/versions", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable("the dashboard did not answer /api/versions within 60s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        containers = subprocess.run(["docker", "ps", "-aq", "--filter", "label=nuclio.io/platform=local"],
                                    capture_output=True, text=True, check=False).stdout.split()
        if containers:
            subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, check=False)
        reset_store()


def main() -> int:
    start = time.monotonic()
    try:
        path = obtain()
        store_image()
    except Unavailable as exc:
        print(f"nuclio dashboard unavailable: {exc}")
        return 3
    print(json.dumps({"dashboard": str(path), "store_image": STORE_IMAGE}))
    print(f"nuclio dashboard {VERSION} ready in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
