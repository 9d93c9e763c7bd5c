"""A logger with Nuclio's API (``info``/``info_with`` ...) so steps log the same way in the
mock server and when deployed (MLRun's mock used another API; see its pain point P3)."""
from __future__ import annotations

import json
import logging
import sys
from typing import Any

from .tracing import current_trace_id

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}


class Logger:
    """``debug/info/warn/warning/error(msg, *args, **kw)`` and ``*_with(msg, **kw)``."""

    def __init__(self, name: str = "graphpack", level: str | int = "info") -> None:
        self._log = logging.getLogger(name)
        if not self._log.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
            self._log.addHandler(handler)
            self._log.propagate = False
        self.set_level(level)

    def set_level(self, level: str | int) -> None:
        self._log.setLevel(_LEVELS.get(level, level) if isinstance(level, str) else level)

    def _emit(self, level: int, message: Any, args: tuple, kw: dict) -> None:
        if not self._log.isEnabledFor(level):
            return
        text = str(message) % args if args else str(message)
        trace = current_trace_id()
        if trace is not None and "trace_id" not in kw:
            kw = {**kw, "trace_id": trace}
        if kw:
            text = f"{text} {json.dumps(kw, default=str, sort_keys=True)}"
        self._log.log(level, text)

    def debug(self, message: Any, *args: Any, **kw: Any) -> None:
        self._emit(logging.DEBUG, message, args, kw)

    def info(self, message: Any, *args: Any, **kw: Any) -> None:
        self._emit(logging.INFO, message, args, kw)

    def warn(self, message: Any, *args: Any, **kw: Any) -> None:
        self._emit(logging.WARNING, message, args, kw)

    warning = warn

    def error(self, message: Any, *args: Any, **kw: Any) -> None:
        self._emit(logging.ERROR, message, args, kw)

    def debug_with(self, message: Any, **kw: Any) -> None:
        self.debug(message, **kw)

    def info_with(self, message: Any, **kw: Any) -> None:
        self.info(message, **kw)

    def warn_with(self, message: Any, **kw: Any) -> None:
        self.warn(message, **kw)

    def error_with(self, message: Any, **kw: Any) -> None:
        self.error(message, **kw)


logger = Logger()
