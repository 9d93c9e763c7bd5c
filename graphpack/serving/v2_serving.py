"""MLRun's ``mlrun.serving.v2_serving`` module path for ``V2ModelServer``."""
from __future__ import annotations

from .v2_model_server import V2ModelServer

__all__ = ["V2ModelServer"]
