"""The Nuclio-facing glue a generated entry module calls (runs inside the image).

``init_context(context, modules=[...], spec_dir=...)`` once per worker, then
``handler(context, event)`` per event. Imports graphpack's runtime only.
"""
from .entry import (
    NuclioLogger,
    get_server,
    handler,
    init_context,
    load_spec,
    shutdown,
    start_consumer,
)
from .events import STREAM_KINDS, from_nuclio, from_record, trigger_kind
from .responses import encode_body, to_nuclio

__all__ = [
    "STREAM_KINDS",
    "NuclioLogger",
    "encode_body",
    "from_nuclio",
    "from_record",
    "get_server",
    "handler",
    "init_context",
    "load_spec",
    "shutdown",
    "start_consumer",
    "to_nuclio",
    "trigger_kind",
]
