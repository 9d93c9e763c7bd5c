"""Run a built function (``graphpack build`` output) under the real Nuclio processor.

``NuclioProcessor(toolchain, function_dir)`` turns the function's ``function.yaml`` into the
processor's config (the http trigger on a free 127.0.0.1 port, optional trigger overrides) and
writes a platform config (kind local, webAdmin and healthCheck on free 127.0.0.1 ports, stdout
logging), then starts ``processor --config ... --platform-config ...`` with the environment a
Nuclio platform would give the container: ``spec.env`` values, ``NUCLIO_PYTHON_PATH`` = the
function directory, the wrapper and Python from the toolchain (see toolchain.py). It is ready
when the health server's ``/ready`` answers 200. ``GraphpackServe`` runs the same directory with
``graphpack serve`` for side-by-side runs.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

import yaml
from tests.plugins.net import free_port


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class _Process:
    """A server process with its output in a temporary file."""

    proc: subprocess.Popen | None = None
    name = "process"

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"graphpack-{self.name}-"))
        self.log_path = self.tmp / "output.log"

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _spawn(self, cmd: list[str], env: dict, cwd: Path) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def _wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before it was "
                                   f"ready:\n{self.logs()[-4000:]}")
            if _get(url) == 200:
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.name} not ready at {url} within {timeout:.0f} s:\n{self.logs()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (killing the process group after ``timeout``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"{self.name} did not exit within {timeout:.0f} s of signal {sig}:\n"
                                   f"{self.logs()[-4000:]}") from None
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the process and everything it started (its own session)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def children_alive(self) -> list[int]:
        """Pids still alive in the process's session (its Python workers, after it exits)."""
        if self.proc is None:
            return []
        alive = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.proc.pid and fields[0] != "Z":  # field 6: session id
                    alive.append(int(entry.name))
        return alive

    def __enter__(self) -> Self:
        return self

    def close(self) -> None:
        """Kill the process (if still running) and remove its config and log files."""
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()  # tests of a clean stop call stop() themselves


def function_env(config: dict) -> dict:
    """The ``spec.env`` values a platform would put in the container (references are skipped)."""
    return {e["name"]: str(e["value"]) for e in (config.get("spec") or {}).get("env") or []
            if "value" in e}


class NuclioProcessor(_Process):
    """The real Nuclio processor running one built function directory."""

    name = "nuclio-processor"

    def __init__(self, toolchain: dict, function_dir: Path, *, workdir: Path | None = None,
                 workers: int | None = None, triggers: dict | None = None, env: dict | None = None,
                 log_level: str = "debug", http: bool = True) -> None:
        super().__init__()
        self.toolchain = toolchain
        self.dir = Path(function_dir)
        self.workdir = Path(workdir or function_dir)
        self.port = free_port()
        self.health_port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = yaml.safe_load((self.dir / "function.yaml").read_text())
        spec = self.config["spec"]
        self.config["metadata"].setdefault("namespace", "default")
        spec_triggers = spec.setdefault("triggers", {})
        for name, override in (triggers or {}).items():
            if override is None:
                spec_triggers.pop(name, None)
            else:
                spec_triggers[name] = override
        for trigger in spec_triggers.values():
            if trigger.get("kind") == "http":
                trigger["url"] = f"127.0.0.1:{self.port}"
                if workers:
                    trigger["numWorkers"] = workers
        self.http = http and any(t.get("kind") == "http" for t in spec_triggers.values())
        self.env = {**function_env(self.config), **(env or {})}
        self.log_level = log_level

    def platform_config(self) -> dict:
        binding = [{"level": self.log_level, "sink": "stdout"}]
        return {
            "kind": "local",
            "webAdmin": {"enabled": True, "listenAddress": f"127.0.0.1:{self.admin_port}"},
            "healthCheck": {"enabled": True, "listenAddress": f"127.0.0.1:{self.health_port}"},
            "logger": {"sinks": {"stdout": {"kind": "stdout"}}, "system": binding, "functions": binding},
        }

    def start(self, timeout: float = 90.0) -> NuclioProcessor:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        self._wait_ready(f"http://127.0.0.1:{self.health_port}/ready", timeout)

    def spawn(self) -> NuclioProcessor:
        """Start the processor without waiting for it (see ``wait_ready``)."""
        config_path, platform_path = self.tmp / "processor.yaml", self.tmp / "platform.yaml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        platform_path.write_text(yaml.safe_dump(self.platform_config(), sort_keys=False))
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
        env.update(self.env)
        env.update(NUCLIO_PYTHON_PATH=str(self.dir), NUCLIO_PYTHON_WRAPPER_PATH=self.toolchain["wrapper"],
                   NUCLIO_PYTHON_EXE_PATH=self.toolchain["python"])
        self._spawn([self.toolchain["processor"], "--config", str(config_path),
                     "--platform-config", str(platform_path)], env, self.workdir)
        return self

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()


class GraphpackServe(_Process):
    """``graphpack serve DIR`` on a free port."""

    name = "graphpack-serve"

    def __init__(self, function_dir: Path, *, workdir: Path | None = None, workers: int | None = None,
                 env: dict | None = None) -> None:
        super().__init__()
        self.dir = Path(function_dir)
        self.workdir = Path(workdir or function_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = env or {}

    def start(self, timeout: float = 60.0) -> GraphpackServe:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._wait_ready(self.url + "/__health", timeout)

    def spawn(self) -> GraphpackServe:
        """Start ``graphpack serve`` without waiting for it (see ``wait_ready``)."""
        cmd = [sys.executable, "-m", "graphpack.cli", "serve", str(self.dir), "--port", str(self.port),
               "--workdir", str(self.workdir)]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        env = {**os.environ, **self.env}
        self._spawn(cmd, env, self.workdir)
        return self

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()
