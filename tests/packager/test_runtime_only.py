"""What a function's image holds: graphpack's runtime side and the user's code, nothing of the
build side (packager, templates, CLI, function/project objects, plotting), and no import of it
(one inside ``try: ... except ImportError`` is optional and raises its own clear error).

The build context is the image's file tree (the Dockerfile copies ``graphpack/`` and the code
as they are); every import in every Python file of it is followed."""
from __future__ import annotations

import ast
import sys
from pathlib import PurePosixPath

import pytest

from graphpack import new_function
from graphpack.packager import plan_and_render

# the build side named by DESIGN §3 and issue 15, written out here (not taken from the packager)
BUILD_SIDE = ("graphpack.packager", "graphpack.templates", "graphpack.cli", "graphpack.function",
              "graphpack.project", "graphpack.source", "graphpack.graph.plot", "graphpack.observe")
# what the build side needs and the runtime must not
BUILD_ONLY_PACKAGES = {"click", "jinja2", "graphviz", "docker", "kubernetes", "nuclio", "nbformat", "jsonschema",
                       "rich", "selenium"}
# third-party packages runtime code may import (each a derived requirement when a graph uses it)
RUNTIME_PACKAGES = {"yaml", "uvloop", "httptools", "boto3", "botocore", "httpx", "croniter", "msgpack",
                    "nuclio_sdk", "numpy", "pandas", "sklearn", "cloudpickle", "joblib", "prometheus_client",
                    "kafka", "confluent_kafka", "opentelemetry"}

CODE = '''
class Echo:
    def do(self, body):
        return body
'''


def rich_contexts(tmp_path):
    """A graph using every runtime feature the packager knows about: root and child contexts."""
    (tmp_path / "code.py").write_text(CODE)
    fn = new_function("rich", "shop", filename=str(tmp_path / "code.py"))
    graph = fn.set_topology("flow", engine="async")
    graph.to("Echo", name="pre").to(">>", "q", path="s3://bucket/q") \
        .to("$remote", name="remote", url="http://127.0.0.1:1/x", function="kid").respond()
    graph.add_step("graphpack.serving.V2ModelServer", name="model", model_path="s3://bucket/m.pkl", after="pre")
    fn.add_child_function("kid", str(tmp_path / "code.py"))
    fn.spec.error_stream = "s3://bucket/errors"
    fn.add_trigger("tick", {"kind": "cron", "attributes": {"schedule": "*/5 * * * *"}})
    return plan_and_render(fn, "shop", "docker")


def module_of(path: str) -> str:
    parts = PurePosixPath(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _guarded(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError`` (optional, with their own error)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports(path: str, source: bytes) -> set[str]:
    """Absolute names of everything ``path`` imports unguarded (module level or inside functions)."""
    package = module_of(path) if path.endswith("__init__.py") else module_of(path).rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(source, path)
    guarded = _guarded(tree)
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # may be attributes; filtered below
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.add(node.args[0].value)
    return out


def test_the_image_holds_the_runtime_side_only(tmp_path):
    for context in rich_contexts(tmp_path):
        files = {path: data for path, (data, _) in context.files.items() if path.endswith(".py")}
        modules = {module_of(path): path for path in files}
        shipped_build_side = sorted(m for m in modules if m.startswith(BUILD_SIDE))
        assert not shipped_build_side, f"{context.name}: build-side modules in the image: {shipped_build_side}"
        assert "graphpack.serve" in modules and "graphpack.runtime.processor" in modules
        assert not any(path.startswith(("bin/", "graphpack/templates")) for path in context.files)

        third_party: dict[str, str] = {}
        for path, data in files.items():
            for name in imports(path, data):
                if name.startswith("graphpack"):
                    parent = name.rpartition(".")[0]
                    if name in modules or (parent in modules and not modules[parent].endswith("__init__.py")):
                        assert not name.startswith(BUILD_SIDE), f"{path} imports build-side {name}"
                        continue
                    if parent in modules:  # `from .pkg import name`: a name in pkg/__init__.py
                        continue
                    pytest.fail(f"{context.name}: {path} imports {name}, which the image does not have")
                top = name.split(".")[0]
                if top and top not in sys.stdlib_module_names and top not in modules and top != "graphpack_entry":
                    third_party.setdefault(top, path)
        assert not set(third_party) & BUILD_ONLY_PACKAGES, {k: third_party[k] for k in BUILD_ONLY_PACKAGES
                                                             if k in third_party}
        unknown = set(third_party) - RUNTIME_PACKAGES
        assert not unknown, f"runtime imports of undeclared packages: { {k: third_party[k] for k in unknown} }"


def test_the_image_command_needs_no_cli(tmp_path):
    root = rich_contexts(tmp_path)[0]
    dockerfile = root.files["Dockerfile"][0].decode().splitlines()
    assert dockerfile[-1] == 'CMD ["python3", "-m", "graphpack.serve", "/opt/graphpack/function"]'
    assert not any("bin/graphpack" in line for line in dockerfile)
    requirements = root.files["requirements.txt"][0].decode()
    assert "click" not in requirements.lower() and "jinja2" not in requirements.lower()
