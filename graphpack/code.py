"""The user's function code: read a .py file or notebook and load it as a module.

Code between ``# graphpack: start`` and ``# graphpack: end`` (or MLRun's ``# mlrun:``
markers) is the function's code when the markers are present; a notebook cell or line
marked ``# graphpack: ignore`` is left out, as are IPython magics and shell lines.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from .errors import GraphpackError

_MARKS = ("graphpack", "mlrun", "nuclio")


def _marker(line: str) -> str | None:
    text = line.strip().lower().replace(" ", "")
    for mark in _MARKS:
        for what in ("start", "end", "ignore", "start-code", "end-code"):
            if text == f"#{mark}:{what}":
                return what.replace("-code", "")
    return None


def _select(lines: list[str], keep_lines: bool = False) -> list[str]:
    """The lines of the function code; with ``keep_lines`` a line left out becomes an empty line
    (trailing ones are dropped), so that line numbers in errors and tracebacks are the file's."""
    marks = [_marker(line) for line in lines]
    if "start" not in marks and "end" not in marks:
        inside_at = [m is None for m in marks]
    else:
        inside_at, inside = [], "start" not in marks
        for mark in marks:
            if mark == "start":
                inside = True
            elif mark == "end":
                inside = False
            inside_at.append(inside and mark is None)
    if not keep_lines:
        return [line for line, keep in zip(lines, inside_at) if keep]
    out = [line if keep else "" for line, keep in zip(lines, inside_at)]
    while out and not out[-1] and not (inside_at and inside_at[len(out) - 1]):
        out.pop()
    return out


def read_code(path: str | Path) -> str:
    """The function code of a .py file or .ipynb notebook (markers applied)."""
    path = Path(path)
    if not path.is_file():
        raise GraphpackError(f"code file {str(path)!r} does not exist")
    if path.suffix == ".ipynb":
        try:
            notebook = json.loads(path.read_text())
        except ValueError as exc:
            raise GraphpackError(f"notebook {str(path)!r} is not valid JSON: {exc}") from None
        lines: list[str] = []
        for cell in notebook.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            cell_lines = text.splitlines()
            if any(_marker(line) == "ignore" for line in cell_lines):
                continue
            lines.extend(line for line in cell_lines if not line.lstrip().startswith(("%", "!")))
        return "\n".join(_select(lines)) + "\n"
    text = path.read_text()
    return "\n".join(_select(text.splitlines(), keep_lines=True)) + "\n"


def load_module(path: str | Path) -> ModuleType:
    """Import the function code as a module (the running script's own module is reused)."""
    path = Path(path).resolve()
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is not None and main_file and Path(main_file).resolve() == path and ".ipynb" != path.suffix:
        return main
    code = read_code(path)
    digest = hashlib.sha1(f"{path}:{code}".encode()).hexdigest()[:12]
    name = f"graphpack_user_{path.stem.replace('-', '_').replace('.', '_')}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)  # noqa: S102 - the user's code
    except Exception as exc:
        del sys.modules[name]
        raise GraphpackError(f"code file {str(path)!r} failed to load: {type(exc).__name__}: {exc}") from exc
    return module
