"""What is deployed: each function's URL and the graph it runs, read from the deploy state and
the build contexts the deploy wrote (``<build dir>/<function>/spec.json``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GraphpackError


@dataclass(frozen=True)
class Function:
    """One deployed function: ``root`` is the function whose graph it runs part of."""

    name: str
    url: str
    root: str
    state: str = ""


@dataclass(frozen=True)
class Deployment:
    """The deployed functions of a project and, per root function, its serving spec."""

    project_dir: Path
    target: str
    functions: dict[str, Function]
    specs: dict[str, dict] = field(default_factory=dict)  # root -> spec.json (graph, error_stream ...)

    def error_stream(self, root: str) -> str | None:
        """The root's error stream URL (a relative file path resolved as its functions do: against
        the project directory, where they run), or None when the graph has none."""
        url = (self.specs.get(root) or {}).get("error_stream")
        if not url:
            return None
        url = str(url)
        if "://" not in url and not Path(url).is_absolute():
            return str(self.project_dir / url)
        return url

    def graph(self, root: str) -> Any:
        """The root's graph (a step object), or None when its spec has none."""
        from ..runtime.server import graph_from_dict

        data = (self.specs.get(root) or {}).get("graph")
        return graph_from_dict(data) if data else None


def load_deployment(target: str, project_dir: str | Path) -> Deployment:
    """The deployment of the project in ``project_dir`` on ``target``; a one-line error when
    nothing is deployed or a build context is missing."""
    from ..packager.deploy import get_deployer

    deployer = get_deployer(target, project_dir)
    status = deployer.status()
    if not status:
        raise GraphpackError(f"nothing is deployed in {str(project_dir)!r} on target {target!r} "
                             "(run graphpack deploy)")
    functions = {name: Function(name, str(info.get("url") or ""), str(info.get("root") or name),
                                str(info.get("state") or ""))
                 for name, info in status.items()}
    build_dir = Path(getattr(deployer, "build_dir"))
    specs = {}
    for root in sorted({f.root for f in functions.values()}):
        # the root's own context, else any of its children's: each carries the whole graph
        names = [root] + sorted(f.name for f in functions.values() if f.root == root and f.name != root)
        paths = [build_dir / name / "spec.json" for name in names]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            raise GraphpackError(f"function {root!r}: no build context at {paths[0]} (deployed by another "
                                 "checkout, or its build output was purged: run graphpack deploy)")
        try:
            specs[root] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GraphpackError(f"cannot read {path}: {exc}") from None
    return Deployment(Path(project_dir).resolve(), target, functions, specs)
