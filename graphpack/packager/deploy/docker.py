"""The docker target: every function as a container of its own image on the local Docker
engine (``--network host``, port from the config), built by the daemonless builder (default)
or by Docker, pushed to a registry when one is configured, else loaded straight into the
engine. State, logs and invoke work as for the local target (state in
``<project>/.graphpack/docker-state.json``); secret references are resolved at run time from
the deploying shell's environment and never reach an image."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

from ...errors import GraphpackError
from .base import InvokeResult, Plan, Progress, Step, removal_order, step_for, unknown_function
from .http import call
from .local import HEALTH_REPORT, START_TIMEOUT, LocalDeployer, _quiet, file_queue_dirs

STOP_TIMEOUT = 30
LABEL = "org.graphpack"


class DockerDeployer(LocalDeployer):
    """Deploys a project as Docker containers. ``builder``: "oci" (default, $GRAPHPACK_IMAGE_BUILDER)
    or "docker"; ``registry``: host[:port] to push to ($GRAPHPACK_REGISTRY; none: load locally)."""

    target = "docker"

    def __init__(self, project_dir: str | Path = ".", host: str = "127.0.0.1", builder: str | None = None,
                 registry: str | None = None, base: Any = None, images: dict[str, str] | None = None) -> None:
        super().__init__(project_dir, host)
        self.images = dict(images or {})  # function -> image to run instead of building one
        self._offline = False
        self.state_path = self.dir / "docker-state.json"
        self.build_dir = self.dir / "docker-build"
        self.builder_name = builder or os.environ.get("GRAPHPACK_IMAGE_BUILDER") or "oci"
        self.registry_host = registry if registry is not None else os.environ.get("GRAPHPACK_REGISTRY") or None
        self.base = base
        self._docker: Any = None

    @property
    def docker(self) -> Any:
        if self._docker is None:
            from ..images.docker_engine import docker_client

            self._docker = docker_client()
        return self._docker

    def _errors(self, what: str) -> Any:
        from ..images.docker_engine import docker_errors

        return docker_errors(what)

    def container_name(self, project: str, function: str) -> str:
        return f"graphpack-{project}-{function}".lower().replace("_", "-")

    def _container(self, name: str | None) -> Any:
        """The container called ``name``, or None."""
        import docker.errors

        if not name:
            return None
        with self._errors("inspect"):
            try:
                return self.docker.containers.get(name)
            except docker.errors.NotFound:
                return None

    def _running(self, entry: dict | None) -> bool:
        try:
            container = self._container((entry or {}).get("container"))
        except GraphpackError:
            if self._offline:  # a dry run without a Docker engine: the state is unknown, not an error
                return False
            raise
        return bool(container and container.status == "running")

    def dry_run(self, project: Any, functions: list[str] | None = None) -> Plan:
        self._offline = True
        try:
            return self.plan(project, functions)
        finally:
            self._offline = False

    def image_name(self, project: str, function: str, digest: str) -> str:
        from ..render import image_name

        return image_name(self.registry_host, project, function, digest)

    # -- plan / apply -------------------------------------------------------------------------
    def plan(self, project: Any, functions: list[str] | None = None) -> Plan:
        state = self.load_state()["functions"]
        steps = []
        contexts = self._render(project, functions)
        details_extra = {"builder": self.builder_name, "registry": self.registry_host or ""}
        unknown = sorted(set(self.images) - {c.plan.function for c in contexts})
        if unknown:
            raise GraphpackError(f"--image {unknown[0]}=...: no function {unknown[0]!r} "
                                 f"(functions: {', '.join(sorted(c.plan.function for c in contexts))})")
        for context in contexts:
            name = context.plan.function
            digest = self._digest(context)
            current = state.get(name)
            image = self.images.get(name) or self.image_name(project.name, name, digest)
            details = {"root": context.plan.root, "digest": digest, **details_extra, "image": image,
                       "build": name not in self.images, "push": self.registry_host if name not in self.images else ""}
            where = f"{(current or {}).get('url')} ({(current or {}).get('image')})"
            steps.append(step_for(name, current, current is not None and self._running(current), digest,
                                  details, where))
        return Plan(self.target, project.name, tuple(steps), str(self.build_dir), tuple(contexts))

    def apply(self, plan: Plan, progress: Progress | None = None) -> dict:
        progress = progress or _quiet
        state = self.load_state()
        state["project"] = plan.project
        if not plan.changes:
            return self.status()
        from .. import write_contexts

        wanted = {s.function for s in plan.changes}
        contexts = [c for c in plan.artifacts if c.plan.function in wanted]
        self._add_wheels(contexts, progress)
        progress(f"building {len(contexts)} function(s) into {self.build_dir}")
        write_contexts(contexts, self.build_dir)
        self._queue_dirs = [str(self.queues_dir)] + file_queue_dirs(plan.artifacts)
        for directory in self._queue_dirs:
            Path(directory).mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o1777)   # the image's user writes file queues in these bind mounts
        builder = self._builder(progress)
        started: list[str] = []
        try:
            self._apply_steps(plan, state, builder, started, progress)
        finally:
            if builder.registry is not None:
                builder.registry.close()
        return self.status()

    def _apply_steps(self, plan: Plan, state: dict, builder: Any, started: list, progress: Progress) -> None:
        try:
            for step in plan.steps:
                if step.action == "keep":
                    continue
                image = self._image(builder, plan.project, step, progress)
                entry = state["functions"].get(step.function)
                if entry:
                    self._remove(entry.get("container"), progress)
                entry = self._run(plan.project, step, image, entry.get("port") if entry else None, progress)
                state["functions"][step.function] = entry
                started.append(step.function)
                self.save_state(state)
        except GraphpackError:
            for name in started:
                self._remove(state["functions"][name].get("container"), progress)
                state["functions"].pop(name, None)
            self.save_state(state)
            raise
        self.save_state(state)

    @staticmethod
    def _add_wheels(contexts: list, progress: Progress) -> None:
        from ..images.wheels import download_wheels, requirement_lines

        for context in contexts:
            lines = requirement_lines(context.files["requirements.txt"][0].decode())
            progress(f"wheels for {context.plan.function}: {', '.join(lines) or 'none'}")
            directory = download_wheels(lines)
            for wheel in sorted(directory.glob("*.whl")):
                context.files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), False)

    def _builder(self, progress: Progress) -> Any:
        from ..images import get_builder
        from ..images.registry import Registry

        registry = Registry(self.registry_host) if self.registry_host else None
        options: dict = {"base": self.base, "registry": registry, "push": registry is not None, "progress": progress}
        if self.builder_name == "oci":
            options["load"] = registry is None
        return get_builder(self.builder_name, **options)

    def _image(self, builder: Any, project: str, step: Step, progress: Progress) -> str:
        """Build the function's image; returns what to run (pulled by digest when pushed)."""
        if step.function in self.images:
            progress(f"{step.function} runs the given image {self.images[step.function]}")
            return self.images[step.function]
        tag = self.image_name(project, step.function, step.details["digest"])
        progress(f"building image {tag} with the {self.builder_name} builder")
        started = time.perf_counter()
        ref = builder.build(self.build_dir / step.function, tag)
        progress(f"built {ref.name} ({ref.digest[:19]}) in {time.perf_counter() - started:.2f}s")
        if not self.registry_host:
            return tag
        auth = None
        if builder.registry is not None and builder.registry.username:
            auth = {"username": builder.registry.username, "password": builder.registry.password or ""}
        with self._errors("pull"):
            self.docker.api.pull(ref.pinned.split("@")[0], tag=ref.digest, auth_config=auth)
        return ref.pinned

    def _environment(self, function: str, port: int) -> dict:
        config = self._config(function)
        env = {"PORT": str(port)}
        missing = []
        for item in config["spec"].get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif item["name"] in os.environ:   # a secret reference, resolved now, at run time
                env[item["name"]] = os.environ[item["name"]]
            else:
                missing.append(item["name"])
        if missing:
            raise GraphpackError(f"function {function!r} needs {', '.join(missing)} in the environment "
                                 "(secret references are resolved when the container starts)")
        return env

    def _mounts(self, function: str) -> dict:
        config = self._config(function)
        volumes = {path: {"bind": path, "mode": "rw"} for path in getattr(self, "_queue_dirs", [str(self.queues_dir)])}
        for item in config["spec"].get("volumes") or []:
            path = (item.get("volumeMount") or {}).get("mountPath")
            if path and os.path.exists(path):   # a secrets file or directory, mounted read-only
                volumes[path] = {"bind": path, "mode": "ro"}
        return volumes

    def _run(self, project: str, step: Step, image: str, port: int | None, progress: Progress) -> dict:
        port = self._pick_port(step, port, progress)
        name = self.container_name(project, step.function)
        self._remove(name, progress)
        progress(f"starting container {name} on port {port}")
        labels = {f"{LABEL}.project": project, f"{LABEL}.function": step.function,
                  f"{LABEL}.digest": step.details.get("digest", "")}
        with self._errors("run"):
            container = self.docker.containers.run(
                image, name=name, detach=True, network_mode="host", environment=self._environment(step.function, port),
                volumes=self._mounts(step.function), labels=labels, working_dir=None)
        url = f"http://{self.host}:{port}"
        started = time.monotonic()
        deadline = started + START_TIMEOUT
        said = 0
        while time.monotonic() < deadline:
            waited = int(time.monotonic() - started)
            if waited >= said + HEALTH_REPORT:
                said = waited
                progress(f"still waiting for container {name} to answer {url}/__health ... {waited} s")
            with self._errors("inspect"):
                container.reload()
            if container.status not in ("created", "running"):
                raise GraphpackError(f"container {name} exited on start; last log lines:\n{self._tail(container)}")
            try:
                if call(url + "/__health", "GET", timeout=1.0).status_code == 200:
                    break
            except GraphpackError:
                pass
            time.sleep(0.1)
        else:
            raise GraphpackError(f"container {name} did not become healthy in {START_TIMEOUT:.0f}s; "
                                 f"last log lines:\n{self._tail(container)}")
        progress(f"{step.function} is ready at {url}")
        return {"container": name, "id": container.id, "image": image, "port": port, "url": url,
                "digest": step.details.get("digest"), "root": step.details.get("root"), "started": time.time()}

    @staticmethod
    def _tail(container: Any, lines: int = 20) -> str:
        try:
            return container.logs(tail=lines).decode(errors="replace").rstrip() or "(no log)"
        except Exception:  # noqa: BLE001 - only for an error message
            return "(no log)"

    def _remove(self, name: str | None, progress: Progress) -> None:
        container = self._container(name)
        if container is None:
            return
        progress(f"stopping container {name}")
        with self._errors("stop"):
            if container.status == "running":
                container.stop(timeout=STOP_TIMEOUT)   # SIGTERM: the processor drains first
            container.remove(force=True)

    # -- operations ----------------------------------------------------------------------------
    def status(self) -> dict:
        out = {}
        for name, entry in self.load_state()["functions"].items():
            container = self._container(entry.get("container"))
            state = "missing"
            health = ""
            if container is not None:
                state = container.status
                health = ((container.attrs.get("State") or {}).get("Health") or {}).get("Status", "")
            out[name] = {"url": entry.get("url"), "pid": None, "port": entry.get("port"),
                         "state": state, "health": health, "root": entry.get("root"),
                         "container": entry.get("container"), "image": entry.get("image")}
        return out

    def invoke(self, function: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, timeout: float = 60.0) -> InvokeResult:
        return super().invoke(function, path, body, method, headers, timeout)

    def logs(self, function: str, follow: bool = False) -> Iterator[str]:
        state = self.load_state()
        functions = state["functions"]
        if function not in functions and function in (state.get("logs") or {}):
            yield from super().logs(function, follow=False)   # saved by `down`
            return
        if function not in functions:
            raise unknown_function(function, list(functions))
        container = self._container(functions[function].get("container"))
        if container is None:
            raise GraphpackError(f"the container of {function!r} is gone (run `graphpack deploy --target docker`)")
        with self._errors("logs"):
            if not follow:
                yield from container.logs().decode(errors="replace").splitlines()
                return
            buffer = b""
            for chunk in container.logs(stream=True, follow=True):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    yield line.decode(errors="replace")

    def delete(self, functions: list[str] | None = None, purge: bool = False) -> list[str]:
        """Stop and remove the containers; ``purge`` also drops queued data, build output and images."""
        import shutil

        state = self.load_state()
        known = state["functions"]
        names = removal_order(known, functions)
        images = []
        kept = state.setdefault("logs", {})
        for name in names:
            kept[name] = self._save_log(name, known[name].get("container"))
            self._remove(known[name].get("container"), _quiet)
            images.append(known.pop(name).get("image"))
        if purge:
            for name in names:
                Path(kept.pop(name)).unlink(missing_ok=True)
        self.save_state(state)
        if purge:
            self._remove_images([i for i in images if i])
            shutil.rmtree(self.queues_dir, ignore_errors=True)
            if not known:
                shutil.rmtree(self.build_dir, ignore_errors=True)
                shutil.rmtree(self.logs_dir, ignore_errors=True)
                kept.clear()
                self.save_state(state)
        return names

    def _save_log(self, function: str, container_name: str | None) -> str:
        """Copy a container's log to ``.graphpack/logs/docker-<function>.log`` (``logs`` reads it after
        ``down``)."""
        path = self.logs_dir / f"docker-{function}.log"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        container = self._container(container_name)
        text = b""
        if container is not None:
            try:
                text = container.logs()
            except Exception:  # noqa: BLE001 - a log we cannot read is an empty log, not a failed down
                text = b""
        path.write_bytes(text)
        return str(path)

    def _remove_images(self, images: list[str]) -> None:
        """Untag the functions' images (layers other images share stay)."""
        import docker.errors

        for image in images:
            try:
                self.docker.images.remove(image)
            except docker.errors.APIError:
                pass   # in use by another container or already gone: nothing to purge

    @staticmethod
    def _digest(context: Any) -> str:
        from ..render import context_digest

        return context_digest(context)


__all__ = ["DockerDeployer"]
