"""User-facing step classes; also reachable as ``mlrun.serving.X`` / ``storey.X`` in class names.

Names are imported on first use, so a function that only needs ``Map`` does not pay for the
model servers' imports at start-up.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GraphContext": "..runtime.context",
    "GraphServer": "..runtime.server", "create_graph_server": "..runtime.server",
    "Extend": ".steps", "Filter": ".steps", "FlatMap": ".steps", "Map": ".steps", "MapClass": ".steps",
    "V2ModelServer": ".v2_model_server",
    "BaseModelRouter": ".routers", "ModelRouter": ".routers",
    "VotingEnsemble": ".ensemble",
    "ParallelRun": ".parallel", "ParallelRunnerModes": ".parallel",
    "Merge": ".merger",
    "TaskStep": "..graph.steps", "RouterStep": "..graph.steps", "QueueStep": "..graph.steps",
    "ErrorStep": "..graph.steps", "MockTrigger": ".server", "MockEvent": ".server",
    "RemoteStep": ".remote", "BatchHttpRequests": ".remote", "RemoteStepError": ".remote",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'graphpack.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
