"""Where the CLI finds a project: a directory with graphpack.yaml, the yaml file itself,
or a Python module / notebook that defines the project or its functions."""
from __future__ import annotations

import contextlib
import os
import runpy
import traceback
from pathlib import Path
from typing import Iterator

from .errors import GraphpackError
from .function import ServingFunction
from .project import PROJECT_FILE, Project


def load_source(source: str | Path = ".") -> Project:
    """A Project from ``source`` (default: graphpack.yaml in the current directory)."""
    path = Path(source)
    if path.is_dir():
        if not (path / PROJECT_FILE).is_file():
            raise GraphpackError(f"no {PROJECT_FILE} in {str(path)!r} (run in a project directory or pass -f FILE)")
        return Project.load(path)
    if not path.exists():
        raise GraphpackError(f"project source {str(path)!r} does not exist")
    if path.suffix in (".yaml", ".yml"):
        return Project.load(path.parent, filepath=path)
    if path.suffix in (".py", ".ipynb"):
        path = path.resolve()
        # as `python script.py` would run it: "./" and the first import path are the script's directory
        with _in_directory(path.parent), _user_errors(path):
            if path.suffix == ".py":
                namespace = runpy.run_path(str(path), run_name="__graphpack__")
            else:
                namespace = {"__name__": "__graphpack__", "__file__": str(path)}
                exec(compile(read_code_all(path), str(path), "exec"), namespace)  # noqa: S102 - the user's notebook
        return _from_namespace(namespace, path)
    raise GraphpackError(f"project source {str(path)!r}: expected a directory, graphpack.yaml, .py or .ipynb")


@contextlib.contextmanager
def _user_errors(path: Path) -> Iterator[None]:
    """A project script that fails is the user's mistake: one line naming the file and line."""
    try:
        yield
    except GraphpackError as exc:  # a graphpack call in the script refused something: name the line
        line = _line_in(path, exc)
        raise GraphpackError(f"{path}:{line}: {exc}" if line and not str(exc).startswith(str(path)) else str(exc)) \
            from None
    except SyntaxError as exc:
        raise GraphpackError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - reported as one line, not a traceback
        line = _line_in(path, exc)
        where = f"{path}:{line}" if line else str(path)
        raise GraphpackError(f"{where}: the project script failed: {type(exc).__name__}: {exc}") from None


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of ``path`` the exception went through last."""
    return next((frame.lineno for frame in reversed(traceback.extract_tb(exc.__traceback__))
                 if Path(frame.filename).resolve() == path), None)


@contextlib.contextmanager
def _in_directory(directory: Path) -> Iterator[None]:
    """Run in ``directory``, with it first on the import path (its modules import each other)."""
    import sys

    previous, before = os.getcwd(), set(sys.modules)
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        os.chdir(previous)
        try:
            sys.path.remove(str(directory))
        except ValueError:
            pass
        for name in set(sys.modules) - before:  # another project's serving.py must not find this one's
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(directory) + os.sep):
                del sys.modules[name]


def read_code_all(path: Path) -> str:
    """All code cells of a notebook (markers ignored: the whole notebook defines the project)."""
    import json

    cells = json.loads(path.read_text()).get("cells", [])
    lines = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            lines += [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines) + "\n"


def _from_namespace(namespace: dict, path: Path) -> Project:
    projects = [v for v in namespace.values() if isinstance(v, Project)]
    if projects:
        return projects[0]
    functions = [v for v in namespace.values() if isinstance(v, ServingFunction)]
    if not functions:
        raise GraphpackError(f"{str(path)!r} defines no graphpack project or serving function")
    project = Project(functions[0].metadata.project or path.stem, path.parent)
    for fn in functions:
        fn.metadata.project = project.name
        project.functions[fn.metadata.name] = fn
    return project
