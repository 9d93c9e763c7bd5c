"""The Deployer interface: plan (read-only), apply, status, invoke, logs, delete.

A plan is a frozen list of steps a user can read before anything changes
(``graphpack deploy --dry-run`` prints it); ``apply`` carries it out.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ...errors import GraphpackError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One planned action on one function."""

    action: str          # "start", "restart", "keep", "stop", "create", "update", "delete"
    function: str        # the deployed function's directory name (root or child)
    reason: str = ""
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        text = f"{self.action:<8} {self.function}"
        text = f"{text}  ({self.reason})" if self.reason else text
        image = self.details.get("image")
        if image:
            todo = "build and push" if self.details.get("push") else "build" if self.details.get("build") else "use"
            text += f"\n           image: {todo} {image}"
        for obj in self.details.get("objects", ()):
            text += f"\n           apply: {obj}"
        return text


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, in order (children before the root)."""

    target: str
    project: str
    steps: tuple[Step, ...]
    build_dir: str = ""
    artifacts: tuple = field(default=(), compare=False, repr=False)  # what apply writes (build contexts)
    notes: tuple[str, ...] = ()  # what the user should know (a dry run that did not read remote state, ...)

    @property
    def changes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action != "keep")

    def describe(self) -> str:
        lines = [f"plan for project {self.project!r} on target {self.target!r}:"]
        lines += [f"  {step.describe()}" for step in self.steps] or ["  (nothing to do)"]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"target": self.target, "project": self.project,
                           "steps": [asdict(s) for s in self.steps], "notes": list(self.notes)}, sort_keys=True)


@dataclass
class InvokeResult:
    """A function's answer to ``invoke``."""

    status_code: int
    body: Any
    content_type: str = ""
    headers: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status_code < 400


class Deployer(ABC):
    """One deploy target (local processes, Docker containers, Nuclio, Knative)."""

    target = ""

    @abstractmethod
    def plan(self, project: Any, functions: list[str] | None = None) -> Plan:
        """What deploying ``functions`` (default: all) would change; reads state only."""

    def dry_run(self, project: Any, functions: list[str] | None = None) -> Plan:
        """The plan ``deploy --dry-run`` prints: never contacts a cluster, dashboard or registry
        (targets whose ``plan`` reads remote state override this)."""
        return self.plan(project, functions)

    @abstractmethod
    def apply(self, plan: Plan, progress: Progress | None = None) -> dict:
        """Carry out ``plan``; returns the deployed functions' status."""

    @abstractmethod
    def status(self) -> dict:
        """Deployed functions by name: url, state and target details."""

    @abstractmethod
    def invoke(self, function: str, path: str = "/", body: Any = None, method: str | None = None,
               headers: dict | None = None, timeout: float = 60.0) -> InvokeResult:
        """Call a deployed function."""

    @abstractmethod
    def logs(self, function: str, follow: bool = False) -> Any:
        """A function's log lines (an iterator when following)."""

    @abstractmethod
    def delete(self, functions: list[str] | None = None, purge: bool = False) -> list[str]:
        """Remove deployed functions (default: all); returns the names removed."""


def read_state(path: Path) -> dict:
    """A deployer's state file (``{"functions": {...}}`` when there is none yet)."""
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {"functions": {}}
    except (OSError, ValueError) as exc:
        raise GraphpackError(f"cannot read deploy state {str(path)!r}: {exc}") from None
    state.setdefault("functions", {})
    return state


def write_state(path: Path, state: dict) -> None:
    """Replace a deployer's state file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def step_for(function: str, current: dict | None, running: bool, digest: str, details: dict,
             where: str) -> Step:
    """The planned action for one function given its recorded state (start, restart or keep)."""
    if current is None:
        return Step("start", function, "new function", details)
    if not running:
        return Step("start", function, "not running", details)
    if current.get("digest") != digest:
        return Step("restart", function, "code or config changed", details)
    return Step("keep", function, f"running at {where}", details)


def deployed(functions: dict, function: str) -> dict:
    """The state entry of a deployed function; a clear error naming the deployed ones otherwise."""
    if function not in functions:
        raise unknown_function(function, list(functions))
    return functions[function]


def removal_order(known: dict, functions: list[str] | None) -> list[str]:
    """The deployed functions to remove (default: all), each checked, roots before their children
    so that nothing is pushed to a queue whose reader is already gone."""
    names = list(functions) if functions else list(known)
    for name in names:
        if name not in known:
            raise unknown_function(name, list(known))
    return sorted(names, key=lambda n: known[n].get("root") != n)


def unknown_function(name: str, known: list[str]) -> GraphpackError:
    if not known:
        return GraphpackError(f"function {name!r} is not deployed: nothing is deployed here (run graphpack deploy)")
    return GraphpackError(f"function {name!r} is not deployed (deployed: {', '.join(sorted(known))})")


def check_deployer(deployer: Deployer, project: Any, function: str, path: str, body: Any,
                   expected: Any, after_invoke: Callable[[], Any] | None = None) -> None:
    """The shared contract every deployer passes: plan shows a start, apply deploys, invoke
    answers ``expected``, a second plan keeps everything, delete removes it. ``after_invoke``
    runs while the functions are still up (e.g. to wait for a child's output)."""
    plan = deployer.plan(project)
    assert plan.changes, "a first deploy must plan changes"
    deployer.apply(plan)
    names = set(deployer.status())
    assert function in names, f"{function} not in status {names}"
    result = deployer.invoke(function, path, body)
    assert result.ok and result.body == expected, (result.status_code, result.body)
    if after_invoke is not None:
        after_invoke()
    again = deployer.plan(project)
    assert not again.changes, f"an unchanged project must plan no changes: {again.describe()}"
    removed = deployer.delete()
    assert function in removed and not deployer.status()
