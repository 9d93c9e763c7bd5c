"""graphpack: MLRun-style serving graphs, tested in-process, shipped as Nuclio/Knative functions."""

__version__ = "0.1.0"

from . import serving, utils  # noqa: E402
from .errors import BadRequestError, GraphpackError, HTTPError, NotReadyError, RequestFailed  # noqa: E402
from .function import ServingFunction, code_to_function, function_from_dict, new_function  # noqa: E402
from .graph.steps import ErrorStep, FlowStep, QueueStep, RootFlowStep, RouterStep, TaskStep  # noqa: E402
from .project import Project, get_or_create_project, load_project  # noqa: E402
from .runtime.context import GraphContext  # noqa: E402
from .runtime.event import Event  # noqa: E402
from .runtime.response import Response  # noqa: E402
from .runtime.server import GraphServer  # noqa: E402
from .triggers import CronTrigger, HttpTrigger, V3IOStreamTrigger  # noqa: E402

__all__ = [
    "__version__",
    "BadRequestError", "CronTrigger", "ErrorStep", "Event", "FlowStep", "GraphContext",
    "GraphServer", "GraphpackError", "HTTPError", "HttpTrigger", "NotReadyError", "Project",
    "QueueStep", "RequestFailed", "Response", "RootFlowStep", "RouterStep", "ServingFunction",
    "TaskStep", "V3IOStreamTrigger", "code_to_function", "function_from_dict",
    "get_or_create_project", "load_project", "new_function", "serving", "utils",
]
