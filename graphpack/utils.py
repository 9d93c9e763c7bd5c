"""MLRun-compatible helpers (``graphpack.utils.get_serving_spec()``)."""
from .runtime.server import get_serving_spec

__all__ = ["get_serving_spec"]
