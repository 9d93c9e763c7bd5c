"""MLRun's ``mlrun.serving.states`` names: the graph's step classes, ``GraphError`` and the route limit."""
from __future__ import annotations

from ..errors import GraphError
from ..graph.steps import (MAX_ALLOWED_STEPS, BaseStep, ErrorStep, FlowStep, QueueStep, RootFlowStep,
                           RouterStep, TaskStep)

__all__ = ["BaseStep", "ErrorStep", "FlowStep", "GraphError", "MAX_ALLOWED_STEPS", "QueueStep", "RootFlowStep",
           "RouterStep", "TaskStep"]
