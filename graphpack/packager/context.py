"""Build contexts: one directory per function, written whole or not at all.

``DIR/<function>/`` holds function.yaml (and the same config as JSON, which graphpack serve reads
without importing PyYAML), the entry module (graphpack_entry.py), the user's code,
requirements.txt, spec.json, a Dockerfile, graphpack's runtime (``graphpack/`` without the build side:
see BUILD_SIDE) and ``wheels/`` (the wheels the Dockerfile installs offline).
Files are rendered in memory first; a build writes them into a temporary directory next to the
output and renames it into place, so a failed build leaves nothing half-written. Same inputs give
byte-identical files (sorted keys, no timestamps, fixed modes and mtimes).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import GraphpackError
from ..runtime.function_config import CONFIG_JSON, config_json
from . import nuclio
from .plan import FunctionPlan, plan_function
from .schema import validate

FIXED_MTIME = 315532800  # 1980-01-01, the earliest time zip and tar layers keep
# graphpack's build side, never shipped in an image (DESIGN §3): the image runs
# ``python -m graphpack.serve`` and needs none of these nor their dependencies (click, jinja2).
BUILD_SIDE = ("packager/", "templates/", "cli.py", "function.py", "project.py", "source.py", "code.py",
              "triggers.py", "graph/plot.py", "observe/")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass
class BuildContext:
    """One function's build context, in memory: relative path -> (bytes, executable)."""

    plan: FunctionPlan
    config: dict
    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config["metadata"]["name"]

    def digests(self) -> dict[str, str]:
        return {path: hashlib.sha256(data).hexdigest() for path, (data, _) in sorted(self.files.items())}


def _env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def dump_yaml(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120)


def runtime_files() -> dict[str, tuple[bytes, bool]]:
    """graphpack's own package, minus the build-time parts, as ``graphpack/...`` files."""
    package = Path(__file__).resolve().parent.parent
    files: dict[str, tuple[bytes, bool]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if "__pycache__" in rel.parts or any(rel.as_posix().startswith(part) for part in BUILD_SIDE):
            continue
        files[f"graphpack/{rel.as_posix()}"] = (path.read_bytes(), False)
    return files


def render(plan: FunctionPlan, target: str = "nuclio", http_workers: int = 1,
           max_body_size: int = nuclio.DEFAULT_MAX_BODY, secret: str | None = None,
           inline_spec: bool = False, wheels: Iterable[Path] = ()) -> BuildContext:
    """The files of one function's build context (nothing is written)."""
    config = nuclio.function_config(plan, target, http_workers, max_body_size, secret)
    # not key-sorted: the order of the graph's steps is the order branches run in
    spec_text = json.dumps(plan.spec, indent=2) + "\n"
    if inline_spec:  # the env fallback, for processors that cannot read the spec file
        config["spec"]["env"].append({"name": "GRAPHPACK_SPEC", "value": json.dumps(plan.spec, separators=(",", ":"))})
    validate(config, f"{plan.where}: function.yaml")
    env = _env()
    modules = [code.module for code in plan.code]
    code_files = [f"{m}.py" for m in modules]
    entry_file = f"{nuclio.ENTRY_MODULE}.py"
    part = "the root part of the graph" if plan.is_root else f"the steps of child function {plan.current_function!r}"
    values = {
        "function": plan.function, "name": config["metadata"]["name"], "project": plan.project,
        "modules": modules, "spec_file": nuclio.SPEC_FILE, "part": part, "function_dir": nuclio.FUNCTION_DIR,
        "base_image": plan.image, "commands": list(plan.build_commands), "entry_file": entry_file,
        "code_files": code_files,
    }
    config_yaml = dump_yaml(config)
    files: dict[str, tuple[bytes, bool]] = {
        "function.yaml": (config_yaml.encode(), False),
        CONFIG_JSON: (config_json(config, config_yaml).encode(), False),  # read by graphpack serve
        nuclio.SPEC_FILE: (spec_text.encode(), False),
        entry_file: (env.get_template("entry.py.j2").render(values).encode(), False),
        "Dockerfile": (env.get_template("Dockerfile.j2").render(values).encode(), False),
        "requirements.txt": ("".join(f"{r}\n" for r in nuclio.requirements_of(plan)).encode(), False),
    }
    for code in plan.code:
        text = code.text if code.text.endswith("\n") else code.text + "\n"
        files[f"{code.module}.py"] = (text.encode(), False)
    for wheel in sorted(wheels, key=lambda p: p.name):
        files[f"wheels/{wheel.name}"] = (wheel.read_bytes(), False)
    files.update(runtime_files())
    return BuildContext(plan, config, files)


def plan_and_render(fn: Any, project: str | None = None, target: str = "nuclio", **options: Any) -> list[BuildContext]:
    """Plan a function (root and children) and render every build context in memory."""
    wheels_dir = options.pop("wheels", None)
    wheels: list[Path] = []
    if wheels_dir:
        directory = Path(wheels_dir)
        if not directory.is_dir():
            raise GraphpackError(f"wheels directory {str(directory)!r} does not exist")
        wheels = sorted(directory.glob("*.whl"))
    return [render(plan, target, wheels=wheels, **options) for plan in plan_function(fn, project, target)]


def _write_tree(root: Path, files: dict[str, tuple[bytes, bool]]) -> None:
    dirs = {root, root / "wheels"}
    for rel, (data, executable) in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        parent = path.parent
        while parent != root and parent not in dirs:
            dirs.add(parent)
            parent = parent.parent
        path.write_bytes(data)
        os.chmod(path, 0o755 if executable else 0o644)
        os.utime(path, (FIXED_MTIME, FIXED_MTIME))
    (root / "wheels").mkdir(exist_ok=True)
    for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        os.chmod(directory, 0o755)
        os.utime(directory, (FIXED_MTIME, FIXED_MTIME))


def write_contexts(contexts: list[BuildContext], output: str | Path) -> list[Path]:
    """Write the contexts as ``output/<function>/``, replacing earlier builds, all or nothing."""
    output = Path(output)
    names = [c.plan.function for c in contexts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphpackError(f"two functions would be built into the same directory: {', '.join(duplicates)}")
    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".graphpack-build-", dir=output))
    except OSError as exc:
        raise GraphpackError(f"cannot write the build output {str(output)!r}: {exc.strerror or exc}") from None
    try:
        for context in contexts:
            _write_tree(staging / context.plan.function, context.files)
        moved: list[Path] = []
        for context in contexts:
            target = output / context.plan.function
            if target.exists() or target.is_symlink():
                old = staging / f".old-{context.plan.function}"
                os.replace(target, old)
            os.replace(staging / context.plan.function, target)
            moved.append(target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(output, ignore_errors=True)
        if isinstance(exc, OSError):
            raise GraphpackError(f"cannot write the build output {str(output)!r}: {exc.strerror or exc}") from None
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return moved


def summary(contexts: list[BuildContext], output: str | Path) -> dict:
    """What a build wrote (``graphpack build --json``)."""
    output = Path(output)
    return {
        "output": str(output),
        "functions": [
            {
                "function": c.plan.function,
                "root": c.plan.root,
                "current_function": c.plan.current_function,
                "name": c.name,
                "path": str(output / c.plan.function),
                "image": c.plan.image,
                "input_queue": c.plan.input_queue.url if c.plan.input_queue else None,
                "triggers": sorted(c.config["spec"]["triggers"]),
                "files": c.digests(),
            }
            for c in contexts
        ],
    }
