"""graphpack: MLRun-style serving graphs, tested in-process, shipped as Nuclio/Knative functions.

The public names below are imported on first use: a deployed function's processor imports
only the runtime it needs, which keeps its cold start short.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "BadRequestError": ".errors", "GraphpackError": ".errors", "HTTPError": ".errors",
    "NotReadyError": ".errors", "RequestFailed": ".errors",
    "ServingFunction": ".function", "code_to_function": ".function", "function_from_dict": ".function",
    "new_function": ".function",
    "ErrorStep": ".graph.steps", "FlowStep": ".graph.steps", "QueueStep": ".graph.steps",
    "RootFlowStep": ".graph.steps", "RouterStep": ".graph.steps", "TaskStep": ".graph.steps",
    "Project": ".project", "deploy_function": ".project", "get_or_create_project": ".project",
    "load_project": ".project",
    "GraphContext": ".runtime.context", "Event": ".runtime.event", "Response": ".runtime.response",
    "GraphServer": ".runtime.server",
    "CronTrigger": ".triggers", "HttpTrigger": ".triggers", "V3IOStreamTrigger": ".triggers",
}
_MODULES = ("serving", "utils")

__all__ = ["__version__", *sorted(_WHERE), *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        raise AttributeError(f"module 'graphpack' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
