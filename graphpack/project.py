"""Projects: a directory with ``graphpack.yaml`` and the functions defined in it."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphpackError
from .function import ServingFunction, function_from_dict, new_function

PROJECT_FILE = "graphpack.yaml"


class Project:
    """A named set of functions saved in ``<context>/graphpack.yaml``."""

    def __init__(self, name: str, context: str | Path = "./") -> None:
        self.name = name
        self.context = Path(context).resolve()
        self.functions: dict[str, ServingFunction] = {}
        self.params: dict = {}

    @property
    def spec_path(self) -> Path:
        return self.context / PROJECT_FILE

    def set_function(self, func: Any = None, name: str = "", kind: str = "serving",
                     image: str | None = None, handler: str | None = None, with_repo: bool | None = None,
                     tag: str = "", requirements: list | None = None,
                     requirements_file: str | None = None) -> ServingFunction:
        """Add (or replace) a function from a code file, a function object or a bare name
        (MLRun's arguments; ``with_repo`` has no meaning here: the code file is always shipped)."""
        if requirements_file:
            from .function import _read_requirements

            requirements = list(requirements or []) + _read_requirements(requirements_file)
        if isinstance(func, ServingFunction):
            fn = func
            fn.metadata.name = name or fn.metadata.name
        else:
            path = str(func) if func is not None else ""
            looks_like_file = bool(path) and (path.endswith((".py", ".ipynb")) or (self.context / path).is_file())
            if looks_like_file:
                fn = new_function(name or Path(path).stem, self.name, tag, kind, image=image,
                                  filename=path, requirements=requirements)
                fn._base_dir = str(self.context)
                fn.code_path()  # fail now, naming the file, if it is missing
            else:
                fn = new_function(name or path, self.name, tag, kind, image=image, requirements=requirements)
                fn._namespace = inspect.currentframe().f_back.f_globals  # type: ignore[union-attr]
            fn.spec.handler = handler
        if not fn.metadata.name:
            raise GraphpackError("set_function: the function needs a name")
        fn.metadata.project = self.name
        fn._project = self
        if image is not None:
            fn.spec.image = image
        if requirements is not None:
            fn.spec.requirements = list(requirements)
        self.functions[fn.metadata.name] = fn
        return fn

    def get_function(self, name: str) -> ServingFunction:
        if name not in self.functions:
            known = ", ".join(self.functions) or "none"
            raise GraphpackError(f"project {self.name!r} has no function {name!r} (functions: {known})")
        return self.functions[name]

    def build_function(self, name: str | None = None, output: str | Path = "build", target: str = "nuclio",
                       **options: Any) -> dict:
        """Write the build contexts of function ``name`` (all functions if None) under ``output``."""
        from .packager import build_project

        return build_project(self, output, [name] if name else None, target=target, **options)

    def to_dict(self) -> dict:
        return {
            "kind": "project",
            "metadata": {"name": self.name},
            "spec": {
                **({"params": self.params} if self.params else {}),
                "functions": {name: fn.to_dict() for name, fn in self.functions.items()},
            },
        }

    def save(self, filepath: str | Path | None = None) -> Path:
        """Write the project spec (``graphpack.yaml`` in the context directory)."""
        path = Path(filepath) if filepath else self.spec_path
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, context: str | Path = "./", filepath: str | Path | None = None) -> "Project":
        """Read a project from its ``graphpack.yaml``."""
        path = Path(filepath) if filepath else Path(context) / PROJECT_FILE
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise GraphpackError(f"cannot read project file {str(path)!r}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise GraphpackError(f"project file {str(path)!r} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or data.get("kind") != "project":
            raise GraphpackError(f"{str(path)!r} is not a graphpack project file (kind: project)")
        name = (data.get("metadata") or {}).get("name")
        if not name:
            raise GraphpackError(f"project file {str(path)!r}: metadata.name is missing")
        project = cls(name, path.parent)
        spec = data.get("spec") or {}
        project.params = dict(spec.get("params") or {})
        for fname, fdata in (spec.get("functions") or {}).items():
            try:
                fn = function_from_dict(fdata)
            except GraphpackError as exc:
                raise GraphpackError(f"{str(path)!r}: function {fname!r}: {exc}") from None
            fn.metadata.name = fn.metadata.name or fname
            fn.metadata.project = name
            fn._base_dir = str(project.context)
            fn._project = project
            project.functions[fname] = fn
        return project

    # -- deploying ------------------------------------------------------------------------
    def deployer(self, target: str = "local") -> Any:
        """The deployer for ``target``, with its state kept in this project's directory."""
        from .packager.deploy import get_deployer

        return get_deployer(target, self.context)

    def deploy_function(self, name: str, target: str = "local", dry_run: bool = False,
                        progress: Any = None) -> "DeployStatus":
        """Build and deploy function ``name`` and its children (children first); a child function's
        name deploys that child alone. ``dry_run``: the plan only, made offline."""
        from .packager import find_function

        fn = self.functions[find_function(self, name)[0]]
        deployer = self.deployer(target)
        plan = deployer.dry_run(self, [name]) if dry_run else deployer.plan(self, [name])
        outputs = {} if dry_run else deployer.apply(plan, progress=progress)
        fn._deployer = deployer
        return DeployStatus(fn, plan, outputs)

    def invoke(self, name: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, target: str = "local") -> Any:
        """Call a deployed function; returns the body (raises GraphpackError on 4xx/5xx)."""
        result = self.deployer(target).invoke(name, path, body, method, headers)
        if not result.ok:
            raise GraphpackError(f"{name} answered {result.status_code}: {result.body}")
        return result.body

    def down(self, functions: list[str] | None = None, purge: bool = False, target: str = "local") -> list[str]:
        """Stop what deploy started (queued data is kept unless ``purge``)."""
        return self.deployer(target).delete(functions, purge=purge)

    def __repr__(self) -> str:
        return f"<Project {self.name!r} at {str(self.context)!r}>"


class DeployStatus:
    """What ``deploy_function`` returns: ``.function`` (invoke it), ``.plan``, ``.outputs``."""

    def __init__(self, function: ServingFunction, plan: Any, outputs: dict) -> None:
        self.function = function
        self.plan = plan
        self.outputs = outputs

    @property
    def url(self) -> str | None:
        info = self.outputs.get(self.function.metadata.name) or {}
        return info.get("url")


def deploy_function(function: ServingFunction | str, mock: bool | None = None, target: str = "local",
                    project: Project | None = None, **options: Any) -> DeployStatus:
    """MLRun's ``deploy_function``: ``mock=True`` serves ``status.function.invoke(...)`` in-process;
    otherwise the function is deployed through its project (``project.deploy_function``)."""
    if isinstance(function, str):
        if project is None:
            raise GraphpackError(f"deploy_function({function!r}): a function name needs project=")
        function = project.get_function(function)
    if mock:
        function._set_as_mock(True)
        return DeployStatus(function, None, {"endpoint": "Mock", "name": function.metadata.name})
    owner = project or function._project
    if owner is None:
        raise GraphpackError(f"deploy_function: function {function.metadata.name!r} belongs to no project; "
                             "add it with project.set_function(...) or pass mock=True")
    return owner.deploy_function(function.metadata.name, target=target, **options)


def get_or_create_project(name: str, context: str | Path = "./", **kw: Any) -> Project:
    """Load ``<context>/graphpack.yaml`` if it exists (same name), else a new project."""
    path = Path(context) / PROJECT_FILE
    if path.is_file():
        project = Project.load(context)
        if project.name != name:
            raise GraphpackError(f"{str(path)!r} holds project {project.name!r}, not {name!r}")
        return project
    return Project(name, context)


def load_project(context: str | Path = "./", **kw: Any) -> Project:
    return Project.load(context)
