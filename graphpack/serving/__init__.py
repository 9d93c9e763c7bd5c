"""User-facing step classes; also reachable as ``mlrun.serving.X`` / ``storey.X`` in class names."""
from ..runtime.context import GraphContext
from ..runtime.server import GraphServer
from .steps import Extend, Filter, FlatMap, Map, MapClass
from .v2_model_server import V2ModelServer
from .routers import BaseModelRouter, ModelRouter
from .ensemble import VotingEnsemble
from .parallel import ParallelRun
from .merger import Merge
from .remote import BatchHttpRequests, RemoteStep, RemoteStepError

__all__ = [
    "GraphContext",
    "GraphServer",
    "Extend",
    "Filter",
    "FlatMap",
    "Map",
    "MapClass",
    "V2ModelServer",
    "BaseModelRouter",
    "ModelRouter",
    "VotingEnsemble",
    "ParallelRun",
    "Merge",
    "RemoteStep",
    "BatchHttpRequests",
    "RemoteStepError",
]
