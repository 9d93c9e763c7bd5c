"""Test helpers: a real distribution registry (Debian's ``docker-registry``) on a free
loopback port, with or without an htpasswd file. Used by graphpack's tests and benchmarks
and by users who test their own image pipelines."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import GraphpackError

REGISTRY_BINARY = "docker-registry"


@dataclass(frozen=True)
class RunningRegistry:
    host: str                       # 127.0.0.1:PORT
    username: str | None = None
    password: str | None = None
    root: str = ""                  # storage directory

    def client(self, **overrides: object):  # -> Registry
        from .registry import Registry

        options = {"username": self.username, "password": self.password, **overrides}
        return Registry(self.host, **options)  # type: ignore[arg-type]


def registry_available() -> str | None:
    """The registry binary's path, or None."""
    return shutil.which(REGISTRY_BINARY)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _htpasswd(username: str, password: str) -> str:
    if shutil.which("htpasswd"):
        return subprocess.run(["htpasswd", "-Bbn", username, password], capture_output=True, text=True,
                              check=True).stdout.strip() + "\n"
    raise GraphpackError("htpasswd (Debian apache2-utils) is needed for a registry with basic auth")


@contextmanager
def run_registry(username: str | None = None, password: str | None = None,
                 root: str | Path | None = None) -> Iterator[RunningRegistry]:
    """Start ``docker-registry`` on 127.0.0.1:<free port> (basic auth when ``username`` is
    given); stops it and removes its storage (unless ``root`` was given) on exit."""
    binary = registry_available()
    if not binary:
        raise GraphpackError("docker-registry is not installed (Debian package docker-registry)")
    own = root is None
    workdir = Path(tempfile.mkdtemp(prefix="graphpack-registry-"))
    storage = Path(root) if root else workdir / "data"
    storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    auth = ""
    if username:
        (workdir / "htpasswd").write_text(_htpasswd(username, password or ""))
        auth = f"auth:\n  htpasswd:\n    realm: graphpack\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth)
    log = open(workdir / "registry.log", "wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise GraphpackError("docker-registry did not start: "
                                         + (workdir / "registry.log").read_text()[-500:]) from None
                time.sleep(0.05)
        yield RunningRegistry(f"127.0.0.1:{port}", username, password, str(storage))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if own:
            shutil.rmtree(storage, ignore_errors=True)


__all__ = ["RunningRegistry", "registry_available", "run_registry"]
