"""The keeper: keeps one locally deployed function serving.

``graphpack deploy`` (local target) starts one keeper per function, as the leader of a new
process group. The keeper runs ``graphpack serve`` (the function's supervisor, which forks its
workers) inside that group and, when the supervisor dies, starts it again on the same port,
with backoff, logging each restart. So ``graphpack down`` stops everything with one signal
to the group, whatever died in between.

- A supervisor that exits before it ever answered ``/__health`` is not restarted: the keeper
  exits 1 and the deploy fails with the log's last lines (a crash on start is a user error).
- On Linux the keeper is a child subreaper: workers orphaned by a dead supervisor come back
  to it; they stop by themselves (they watch their parent), and the keeper waits for them to
  go (SIGKILL after ``DRAIN_TIMEOUT``) before the new supervisor needs their port.
- SIGTERM/SIGINT: pass SIGTERM on, wait for the supervisor to drain, exit 0.
- Its state (keeper pid, supervisor pid, restarts, last exit) is a small JSON file that
  ``graphpack status`` reads.

Standard library only, run as a script so that it stays small for as long as the function runs:
``python -P keeper.py STATUS_FILE HEALTH_URL -- COMMAND...``.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DRAIN_TIMEOUT = 30.0     # seconds orphaned workers get to drain before SIGKILL
STABLE_AFTER = 10.0      # a supervisor that ran this long resets the backoff
FIRST_DELAY = 0.1        # seconds before restarting a supervisor that ran stably
BACKOFF = (0.5, 30.0)    # first and largest delay between quick consecutive failures
HEALTH_INTERVAL = 0.02   # seconds between health checks while a supervisor starts
PR_SET_CHILD_SUBREAPER = 36


def describe_exit(status: int) -> str:
    """``was killed by SIGKILL`` / ``exited with code 1`` for a waitpid status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def backoff(failures: int) -> float:
    """The delay before the next start after ``failures`` quick consecutive failures."""
    if failures == 0:
        return FIRST_DELAY
    first, largest = BACKOFF
    return min(largest, first * 2 ** (failures - 1))


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc; elsewhere none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def healthy(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        return connection.getresponse().status == 200
    except (OSError, HTTPException):
        return False
    finally:
        connection.close()


class Keeper:
    """Runs ``command`` and restarts it when it dies (see the module docstring)."""

    def __init__(self, status_path: Path, health_url: str, command: list[str]) -> None:
        self.status_path = status_path
        self.health_url = health_url
        self.command = command
        self.child: int | None = None
        self.stopping = False
        self.restarts = 0
        self.last_exit = ""
        self.ever_ready = False

    def log(self, message: str) -> None:
        try:
            print(f"--- graphpack keeper {time.strftime('%Y-%m-%d %H:%M:%S')}: {message} ---",
                  file=sys.stderr, flush=True)
        except OSError:  # a full disk must not stop the keeping
            pass

    def write_status(self, state: str) -> None:
        data = {"keeper": os.getpid(), "pid": self.child, "state": state, "restarts": self.restarts,
                "last_exit": self.last_exit, "updated": time.time()}
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data, sort_keys=True))
            tmp.replace(self.status_path)
        except OSError:  # status is for `graphpack status`; a full disk must not stop the keeping
            pass

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.child is not None:
            try:
                os.kill(self.child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        become_subreaper()
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            child = self.child = os.posix_spawn(self.command[0], self.command, os.environ)
            if self.stopping:  # the stop signal came before the child existed
                os.kill(child, signal.SIGTERM)
            self.write_status("starting" if not self.ever_ready else "restarting")
            status = self.wait_ready(child)
            if status is None:
                self.ever_ready = True
                self.write_status("running")
                status = self.wait_child(child)
            self.child = None
            self.last_exit = f"supervisor (pid {child}) {describe_exit(status)}"
            self.reap_orphans()
            if self.stopping:
                break
            if not self.ever_ready:
                self.log(f"{self.last_exit} before it was ready; not restarting")
                self.write_status("failed")
                return 1
            failures = 0 if time.monotonic() - started >= STABLE_AFTER else failures + 1
            delay = backoff(failures)
            self.restarts += 1
            self.log(f"{self.last_exit}; restart {self.restarts} on the same port in {delay:g}s")
            self.write_status("restarting")
            self.sleep(delay)
        self.write_status("stopped")
        return 0

    def wait_ready(self, child: int) -> int | None:
        """Poll the health URL until it answers (None) or the child exits (its wait status)."""
        while True:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                return status
            if self.stopping:
                return self.wait_child(child)
            if healthy(self.health_url):
                return None
            time.sleep(HEALTH_INTERVAL)

    def wait_child(self, child: int) -> int:
        """Block until the supervisor exits, reaping orphaned workers on the way."""
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                return status

    def reap_orphans(self) -> None:
        """Wait for workers left by a dead supervisor to finish draining; SIGKILL after a while."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                continue
            if time.monotonic() > deadline:
                for orphan in children_of(os.getpid()):
                    self.log(f"worker pid {orphan} still runs {DRAIN_TIMEOUT:g}s after its supervisor died: SIGKILL")
                    try:
                        os.kill(orphan, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = float("inf")
            time.sleep(0.05)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: keeper.py STATUS_FILE HEALTH_URL -- COMMAND...", file=sys.stderr)
        return 2
    return Keeper(Path(argv[0]), argv[1], argv[3:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
