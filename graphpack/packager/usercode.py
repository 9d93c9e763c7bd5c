"""The user's code a function's image carries: which file, which part of it, which module name.

- ``spec.filename`` (a .py file or notebook): that file; code between ``# graphpack: start`` /
  ``# graphpack: end`` markers when it has them. Notebooks go through nuclio-jupyter's exporter
  (markers translated to its ``start-code``/``end-code``), else graphpack's own reader.
- A child function with a .py/.ipynb ``url``: that file.
- A function defined inline in a project script (no filename): the script's code between the
  markers; without markers this is an error (the whole project script never runs inside a function).
- A function loaded from graphpack.yaml without a filename: no code (class names must be importable).
"""
from __future__ import annotations

import base64
import json
import keyword
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..code import _marker, read_code
from ..errors import GraphpackError

FALLBACK_MODULE = "graphpack_code"
_RESERVED = {"graphpack", "graphpack_entry", "nuclio", "nuclio_sdk", "handler", "main", "function"}


@dataclass(frozen=True)
class CodeFile:
    """One module of user code copied into a build context."""

    module: str
    text: str
    origin: str  # the file it came from (for messages)


def module_name(stem: str, taken: set[str] | None = None) -> str:
    """A stable importable module name for a code file (never shadowing stdlib or graphpack)."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", stem).lower()
    if not name or not name.isidentifier() or keyword.iskeyword(name) or name in _RESERVED \
            or name in sys.stdlib_module_names or name.startswith("graphpack"):
        name = FALLBACK_MODULE
    base, index = name, 2
    while taken is not None and name in taken:
        name, index = f"{base}_{index}", index + 1
    return name


def has_markers(lines: list[str]) -> bool:
    return any(_marker(line) == "start" for line in lines)


def notebook_lines(path: Path) -> list[str]:
    try:
        notebook = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GraphpackError(f"notebook {str(path)!r} cannot be read: {exc}") from None
    lines: list[str] = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            lines += ("".join(source) if isinstance(source, list) else source).splitlines()
    return lines


def _translate(source: str) -> str:
    """graphpack/mlrun markers -> the annotations nuclio-jupyter's exporter knows."""
    out = []
    for line in source.splitlines(keepends=True):
        mark = _marker(line)
        if mark is not None:
            end = "\n" if line.endswith("\n") else ""
            line = {"start": "# nuclio: start-code", "end": "# nuclio: end-code",
                    "ignore": "# nuclio: ignore"}[mark] + end
        out.append(line)
    return "".join(out)


def export_notebook(path: Path) -> str:
    """A notebook's function code via nuclio-jupyter's exporter (graphpack's reader if absent)."""
    limit = sys.getrecursionlimit()
    try:
        import nbformat
        from nuclio.export import NuclioExporter
    except ImportError:
        return read_code(path)
    finally:
        sys.setrecursionlimit(limit)  # nuclio-jupyter raises the process-wide limit on import
    try:
        with warnings.catch_warnings():  # cells without ids (older notebooks) are fine here
            warnings.filterwarnings("ignore", module=r"nbformat(\..*)?$")
            warnings.filterwarnings("ignore", message=".*missing an id field.*")
            notebook = nbformat.reads(path.read_text(), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.source = _translate(cell.source)
        config, _ = NuclioExporter().from_notebook_node(notebook, {"metadata": {"name": path.stem}})
    except Exception as exc:  # noqa: BLE001 - nbformat/exporter errors become one line
        raise GraphpackError(f"notebook {str(path)!r} cannot be exported: {type(exc).__name__}: {exc}") from None
    import yaml

    encoded = (yaml.safe_load(config).get("spec", {}).get("build", {}) or {}).get("functionSourceCode", "")
    return base64.b64decode(encoded).decode("utf-8")


def read_function_file(path: Path) -> str:
    return export_notebook(path) if path.suffix == ".ipynb" else read_code(path)


def _resolve(path_text: str, base_dir: str | None) -> Path:
    path = Path(path_text)
    if not path.is_absolute() and base_dir:
        path = Path(base_dir) / path
    return path


def inline_code(where: str, script: Path) -> str:
    """The marked part of the project script a function was defined in."""
    lines = notebook_lines(script) if script.suffix == ".ipynb" else script.read_text().splitlines()
    if not has_markers(lines):
        raise GraphpackError(
            f"{where}: field spec.filename is not set and {str(script)!r} has no '# graphpack: start' / "
            "'# graphpack: end' markers around the function's code; add the markers or set the "
            "function's code file (project.set_function('code.py', ...))")
    return read_function_file(script)


def function_code(fn, where: str) -> list[CodeFile]:
    """The code modules of a root function (see the module docstring)."""
    if fn.spec.filename:
        path = _resolve(fn.spec.filename, fn._base_dir)
        if not path.is_file():
            raise GraphpackError(f"{where}: field spec.filename: code file {str(path)!r} does not exist")
        if path.suffix not in (".py", ".ipynb"):
            raise GraphpackError(f"{where}: field spec.filename: {str(path)!r} is not a .py file or notebook")
        return [CodeFile(module_name(path.stem), read_function_file(path), str(path))]
    namespace = fn._namespace if isinstance(getattr(fn, "_namespace", None), dict) else None
    script = namespace.get("__file__") if namespace else None
    if script and Path(script).suffix in (".py", ".ipynb") and Path(script).is_file():
        path = Path(script)
        return [CodeFile(module_name(path.stem), inline_code(where, path), str(path))]
    return []


def child_code(fn, child, where: str, root_code: list[CodeFile]) -> list[CodeFile]:
    """A child's code: its own .py/.ipynb url, else the root function's code."""
    url = child.url
    if url and "://" not in url and Path(url).suffix in (".py", ".ipynb"):
        path = _resolve(url, fn._base_dir)
        if not path.is_file():
            raise GraphpackError(f"{where}: field url: code file {str(path)!r} does not exist")
        return [CodeFile(module_name(path.stem), read_function_file(path), str(path))]
    if url and "://" not in url:
        raise GraphpackError(f"{where}: field url: {url!r} is not a .py file or notebook")
    return list(root_code)
