"""The local target: every function as a `graphpack serve` process on 127.0.0.1, joined by
real queues, with state, logs and default queues under ``<project>/.graphpack/``.

Each function runs in its own process group, led by a keeper (keeper.py) that restarts its
supervisor on the same port when it dies; stopping a function signals the whole group, so
nothing it started is left behind, whatever crashed before. ``isolated`` (or
``GRAPHPACK_LOCAL_ISOLATED=1``) runs each function as its image would: ``python -I`` in a clean
environment holding only its requirements.txt (packager/venvs.py), never the deploying venv."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from ...errors import GraphpackError
from ...graph.steps import FlowStep, QueueStep
from .base import Deployer, InvokeResult, Plan, Progress, Step, deployed, read_state, removal_order, step_for, write_state
from .http import call

STATE_DIR = ".graphpack"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
DEFAULT_ROOT_PORT = 8080
HEALTH_REPORT = 5  # seconds between "still waiting" lines while a function starts
HEALTH_PATH = "/__health"
KEEPER = str(Path(__file__).with_name("keeper.py"))


def _quiet(message: str) -> None:
    """The default progress sink (the CLI passes its own)."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pid_alive(pid: int | None, ours: bool = False) -> bool:
    """True when ``pid`` runs (and, unless ``ours``, is a graphpack processor, not a reused pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    if not ours and b"graphpack" not in cmdline:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def group_alive(pgid: int | None) -> bool:
    """True while process group ``pgid`` has a live graphpack process (zombies and a group id
    reused by an unrelated process do not count). Without /proc: while the group exists."""
    if not pgid:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z" and b"graphpack" in (entry / "cmdline").read_bytes():
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def stop_group(pgid: int | None, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a function's process group (keeper, supervisor, workers: they drain and commit),
    SIGKILL it after ``timeout``; returns when none of it runs."""
    if not pgid or not group_alive(pgid):
        _reap(pgid)
        return
    if not _signal_and_wait(pgid, signal.SIGTERM, timeout):
        _signal_and_wait(pgid, signal.SIGKILL, 5.0)
    try:  # members that are not graphpack processes (started by user code) go too
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pgid)


def _signal_and_wait(pgid: int, sig: int, timeout: float) -> bool:
    """Signal the group; True once no graphpack process of it runs, False after ``timeout``."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while True:
        _reap(pgid)
        if not group_alive(pgid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def spawn(argv: list[str], env: dict, log_fd: int) -> int:
    """Start a detached process (own session, output to ``log_fd``) that outlives this one."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)]
    return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)


def _reap(pid: int | None) -> None:
    if not pid:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def group_of(entry: dict) -> int | None:
    """The process group of a deployed function: its keeper's (older state: the supervisor's)."""
    return entry.get("keeper") or entry.get("pid")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def with_default_queues(project: Any, queues_dir: Path) -> Any:
    """A copy of the project where queues with an empty path use durable file queues under
    ``queues_dir`` and a relative file queue or error stream path is made absolute against the
    project directory (every process and container of the project, and the deploy-time check
    run from any working directory, then open the same queue)."""
    originals = _functions(project)
    root = Path(getattr(project, "context", None) or ".")
    project = copy.copy(project)
    project.functions = {}
    for name, fn in originals.items():
        clone = copy.deepcopy(fn)
        graph = clone.spec.graph
        if isinstance(graph, FlowStep):
            for step in graph.steps.values():
                if not isinstance(step, QueueStep):
                    continue
                if step.path == "" and _feeds_child(graph, str(step.name)):
                    step.path = str((queues_dir / f"{name}-{step.name}").resolve())
                elif step.path and "://" not in step.path and not os.path.isabs(step.path) \
                        and not (step.options or {}).get("kafka_brokers"):  # a bare Kafka topic, not a file
                    step.path = str((root / step.path).resolve())
        stream = clone.spec.error_stream
        if stream and "://" not in stream and not os.path.isabs(stream):
            clone.spec.error_stream = str((root / stream).resolve())
        project.functions[name] = clone
    return project


def file_queue_dirs(contexts: Iterable[Any]) -> list[str]:
    """The directories of the file queues the functions read and of their file error streams
    (absolute paths)."""
    paths = set()
    for c in contexts:
        queue = c.plan.input_queue
        if queue is not None and queue.scheme == "file" and queue.url:
            paths.add(queue.url)
        stream = c.plan.spec.get("error_stream") or ""
        if stream.startswith("file://") or (stream and "://" not in stream):
            paths.add(stream.removeprefix("file://"))
    return sorted({str(Path(path).parent) for path in paths if os.path.isabs(path)})


def _functions(project: Any) -> dict:
    return dict(project.__dict__.get("functions") or {})


def _feeds_child(graph: FlowStep, queue: str) -> bool:
    return any(queue in s.after and getattr(s, "function", None) for s in graph.steps.values())


def check_queues(contexts: list) -> None:
    """Every queue and error stream the functions use is reachable (a clear error now, not at
    the first event): missing bucket, no credentials, unreachable endpoint."""
    from ...queues import check_queue_url

    seen = set()
    for context in contexts:
        plan = context.plan
        urls: list[tuple[str | None, dict]] = [(plan.spec.get("error_stream"), {})]
        queue = plan.input_queue
        if queue is not None:  # with its options: endpoint_url=, shards= ...
            urls.append((queue.url, {**queue.options, **({"shards": queue.shards} if queue.shards else {})}))
        for url, options in urls:
            if url and url not in seen and not url.startswith("memory://"):
                seen.add(url)
                try:
                    check_queue_url(url, **options)
                except GraphpackError as exc:
                    text = str(exc)
                    prefix = "" if url in text else f"queue {url!r}: "
                    raise GraphpackError(f"{plan.where}: {prefix}{text}") from None


class LocalDeployer(Deployer):
    """Deploys a project as local processes (no Docker, no cluster)."""

    target = "local"

    def __init__(self, project_dir: str | Path = ".", host: str = "127.0.0.1", isolated: bool | None = None) -> None:
        self.root = Path(project_dir).resolve()
        self.host = host
        # isolated: each function in a clean environment of its own requirements (as in its image)
        self.isolated = os.environ.get("GRAPHPACK_LOCAL_ISOLATED", "") == "1" if isolated is None else isolated
        self.dir = self.root / STATE_DIR
        self.state_path = self.dir / "state.json"
        self.build_dir = self.dir / "build"
        self.logs_dir = self.dir / "logs"
        self.queues_dir = self.dir / "queues"
        self.run_dir = self.dir / "run"

    # -- state ------------------------------------------------------------------------------
    def load_state(self) -> dict:
        state = read_state(self.state_path)
        state.setdefault("target", self.target)
        return state

    def save_state(self, state: dict) -> None:
        write_state(self.state_path, state)

    # -- plan / apply -----------------------------------------------------------------------
    def _render(self, project: Any, functions: list[str] | None) -> list:
        """Build contexts, children first (the root pushes to queues the children read)."""
        from .. import project_contexts

        return project_contexts(with_default_queues(project, self.queues_dir), functions, self.target,
                                action="deploy", children_first=True)

    @staticmethod
    def _digest(context: Any) -> str:
        return hashlib.sha256(json.dumps(context.digests(), sort_keys=True).encode()).hexdigest()[:16]

    def plan(self, project: Any, functions: list[str] | None = None) -> Plan:
        state = self.load_state()["functions"]
        steps = []
        contexts = self._render(project, functions)
        check_queues(contexts)
        for context in contexts:
            name = context.plan.function
            digest = self._digest(context)
            current = state.get(name)
            details = {"root": context.plan.root, "digest": digest}
            running = current is not None and pid_alive(current.get("keeper"))
            step = step_for(name, current, running, digest, details, (current or {}).get("url", ""))
            if current is not None and not running and group_alive(group_of(current)):
                step = dataclasses.replace(step, reason="its keeper is gone (restarted with a new one)")
            steps.append(step)
        return Plan(self.target, project.name, tuple(steps), str(self.build_dir), tuple(contexts))

    def apply(self, plan: Plan, progress: Progress | None = None) -> dict:
        progress = progress or _quiet
        state = self.load_state()
        state["project"] = plan.project
        started: list[str] = []
        if plan.changes:
            from .. import write_contexts

            wanted = {s.function for s in plan.changes}
            contexts = [c for c in plan.artifacts if c.plan.function in wanted]
            progress(f"building {len(contexts)} function(s) into {self.build_dir}")
            write_contexts(contexts, self.build_dir)
        try:
            for step in plan.steps:
                if step.action == "keep":
                    continue
                entry = state["functions"].get(step.function)
                if entry and group_alive(group_of(entry)):  # whatever is left of it, keeper or not
                    progress(f"stopping {step.function} (process group {group_of(entry)})")
                    stop_group(group_of(entry))
                port = entry.get("port") if entry else None
                entry = self._start(step, port, progress)
                state["functions"][step.function] = entry
                started.append(step.function)
                self.save_state(state)
        except GraphpackError:
            for name in started:
                stop_group(group_of(state["functions"][name]))
                state["functions"].pop(name, None)
            self.save_state(state)
            raise
        self.save_state(state)
        return self.status()

    def _pick_port(self, step: Step, port: int | None, progress: Progress) -> int:
        wanted = port
        if wanted is None and step.details.get("root") == step.function:
            config = self._config(step.function)
            http: dict = next((t for t in (config["spec"].get("triggers") or {}).values()
                               if t.get("kind") == "http"), {})
            wanted = int((http.get("attributes") or {}).get("port") or DEFAULT_ROOT_PORT)
        if wanted and port_free(wanted, self.host):
            return wanted
        chosen = free_port(self.host)
        if wanted:
            progress(f"port {wanted} is in use: {step.function} gets port {chosen}")
        return chosen

    def _config(self, function: str) -> dict:
        import yaml

        return yaml.safe_load((self.build_dir / function / "function.yaml").read_text())

    def _start(self, step: Step, port: int | None, progress: Progress) -> dict:
        from ...runtime.processor import RESTARTS_FILE_ENV

        port = self._pick_port(step, port, progress)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{step.function}.log"
        function_dir = self.build_dir / step.function
        url = f"http://{self.host}:{port}"
        run_path, workers_path = self._run_files(step.function)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run_path.unlink(missing_ok=True)
        workers_path.unlink(missing_ok=True)
        progress(f"starting {step.function} on port {port}")
        options = ["--port", str(port), "--host", self.host, "--workdir", str(self.root)]
        if self.isolated:
            from ..venvs import serve_command

            progress(f"clean environment for {step.function}: its requirements.txt only")
            serve = serve_command(function_dir, *options)
        else:
            serve = [sys.executable, "-m", "graphpack.cli", "serve", str(function_dir), *options]
        with open(log_path, "ab") as log:
            log.write(f"--- graphpack deploy: starting {step.function} at {time.ctime()} ---\n".encode())
            log.flush()
            keeper = spawn([sys.executable, "-P", KEEPER, str(run_path), url + HEALTH_PATH, "--", *serve],
                           {**os.environ, "GRAPHPACK_STATE": str(self.state_path), "PYTHONUNBUFFERED": "1",
                            RESTARTS_FILE_ENV: str(workers_path)},
                           log.fileno())
        try:
            pid = self._wait_running(step.function, keeper, url, progress)
        except BaseException:  # a failed start, or the deploy interrupted: leave nothing running
            stop_group(keeper)
            raise
        progress(f"{step.function} is ready at {url}")
        return {"keeper": keeper, "pid": pid, "port": port, "url": url,
                "log": str(log_path), "dir": str(function_dir), "digest": step.details.get("digest"),
                "root": step.details.get("root"), "started": time.time()}

    def _wait_running(self, function: str, keeper: int, url: str, progress: Progress) -> int:
        """Wait until the keeper reports its supervisor healthy; the supervisor's pid."""
        run_path, log_path = self._run_files(function)[0], self.logs_dir / f"{function}.log"
        started = time.monotonic()
        said = 0
        while time.monotonic() < started + START_TIMEOUT:
            waited = int(time.monotonic() - started)
            if waited >= said + HEALTH_REPORT:
                said = waited
                progress(f"still waiting for {function} to answer {url}{HEALTH_PATH} ... {waited} s")
            if not pid_alive(keeper, ours=True):  # the keeper gives up when the first start fails
                raise GraphpackError(f"function {function!r} exited on start; last log lines:\n{tail(log_path)}")
            run = read_json(run_path)
            if run.get("state") == "running":
                return int(run["pid"])
            time.sleep(0.05)
        raise GraphpackError(f"function {function!r} did not become healthy in {START_TIMEOUT:.0f}s; "
                             f"last log lines:\n{tail(log_path)}")

    def _run_files(self, function: str) -> tuple[Path, Path]:
        """The keeper's status file and the supervisor's replaced-workers file of a function."""
        return self.run_dir / f"{function}.json", self.run_dir / f"{function}.workers"

    # -- operations -------------------------------------------------------------------------
    def status(self) -> dict:
        """Per function: url, port, ``pid`` (its supervisor now), ``keeper``, ``restarts`` (of the
        supervisor, by the keeper) and ``worker_restarts`` (by the supervisor) since deploy,
        ``last_exit`` and ``state``: running, starting, restarting or stopped; ``supervised`` is
        false when its keeper is gone."""
        out = {}
        for name, entry in self.load_state()["functions"].items():
            run_path, workers_path = self._run_files(name)
            run = read_json(run_path)
            try:
                worker_restarts = len(workers_path.read_text().splitlines())
            except OSError:
                worker_restarts = 0
            pid = run["pid"] if "pid" in run else entry.get("pid")  # None while the keeper restarts it
            alive = pid_alive(pid)
            supervised = pid_alive(entry.get("keeper"))
            state = "running" if alive else "stopped"
            if supervised and run.get("state") in ("starting", "restarting"):
                state = run["state"]
            elif supervised and not alive:
                state = "restarting"
            out[name] = {"url": entry.get("url"), "pid": pid, "port": entry.get("port"), "state": state,
                         "root": entry.get("root"), "log": entry.get("log"), "keeper": entry.get("keeper"),
                         "supervised": supervised, "restarts": int(run.get("restarts") or 0),
                         "worker_restarts": worker_restarts, "last_exit": run.get("last_exit") or ""}
        return out

    def url_of(self, function: str) -> str:
        return deployed(self.load_state()["functions"], function)["url"]

    def invoke(self, function: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, timeout: float = 60.0) -> InvokeResult:
        url = self.url_of(function).rstrip("/") + "/" + (path or "/").lstrip("/")
        return call(url, method or ("POST" if body is not None else "GET"), body, headers, timeout)

    def log_path(self, function: str) -> Path:
        """A function's log file: of a deployed function, or of one stopped by ``down`` (kept until
        ``down --purge``)."""
        state = self.load_state()
        kept = state.get("logs") or {}
        if function not in state["functions"] and function in kept:
            return Path(kept[function])
        return Path(deployed(state["functions"], function)["log"])

    def logs(self, function: str, follow: bool = False) -> Iterator[str]:
        path = self.log_path(function)
        if not path.is_file():
            raise GraphpackError(f"the log of {function!r} ({path}) is gone")
        with open(path, errors="replace") as handle:
            while True:
                line = handle.readline()
                if line:
                    yield line.rstrip("\n")
                elif not follow:
                    return
                else:
                    time.sleep(0.2)

    def delete(self, functions: list[str] | None = None, purge: bool = False) -> list[str]:
        state = self.load_state()
        known = state["functions"]
        names = removal_order(known, functions)
        kept = state.setdefault("logs", {})
        for name in names:
            stop_group(group_of(known[name]))
            for path in self._run_files(name):
                path.unlink(missing_ok=True)
            kept[name] = known.pop(name)["log"]
        if purge:
            for name in names:
                Path(kept.pop(name)).unlink(missing_ok=True)
        self.save_state(state)
        if purge:
            shutil.rmtree(self.queues_dir, ignore_errors=True)
            if not known:
                shutil.rmtree(self.build_dir, ignore_errors=True)
                shutil.rmtree(self.run_dir, ignore_errors=True)
                shutil.rmtree(self.logs_dir, ignore_errors=True)
                kept.clear()
                self.save_state(state)
        return names
