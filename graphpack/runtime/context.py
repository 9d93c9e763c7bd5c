"""The context object steps receive (``context`` in ``__init__``)."""
from __future__ import annotations

import os
import re
import socket
from typing import Any, Callable

from ..errors import GraphpackError
from .logger import Logger, logger as default_logger
from .response import Response
from .secrets import SecretsStore


class GraphContext:
    """Parameters, secrets, logger and service access for the steps of one graph server."""

    Response = Response

    def __init__(
        self,
        server: Any = None,
        level: str = "info",
        logger: Any = None,
        nuclio_context: Any = None,
        parameters: dict | None = None,
        secret_sources: list | None = None,
    ) -> None:
        self.state = None
        self.server = server
        self.logger = logger or nuclio_context and getattr(nuclio_context, "logger", None) or default_logger
        self.verbose = False
        self.root: Any = None
        self.current_function = ""
        self.is_mock = False
        self.worker_id = getattr(nuclio_context, "worker_id", 0) if nuclio_context else 0
        self.trigger = ""
        self.platform = getattr(nuclio_context, "platform", None)
        self.user_data = getattr(nuclio_context, "user_data", None) or type("UserData", (), {})()
        self.project = ""
        self._parameters = parameters if parameters is not None else {}
        self._secrets = SecretsStore(secret_sources)
        self._error_pusher: Callable[..., Any] | None = None
        if nuclio_context is not None and hasattr(nuclio_context, "Response"):
            self.Response = nuclio_context.Response  # type: ignore[misc]
        if server is not None:
            self._parameters = getattr(server, "parameters", None) or self._parameters
            self._secrets = SecretsStore(getattr(server, "secret_sources", None) or secret_sources)
            self.verbose = bool(getattr(server, "verbose", False))
            self.current_function = getattr(server, "current_function", "") or ""
            function_uri = getattr(server, "function_uri", "") or ""
            self.project = function_uri.split("/")[0] if "/" in function_uri else ""

    def get_param(self, key: str, default: Any = None) -> Any:
        """A graph parameter (``fn.spec.parameters``)."""
        return self._parameters.get(key, default) if self._parameters else default

    def get_secret(self, key: str) -> Any:
        """A secret from the function's sources (``fn.with_secrets``); None when unknown."""
        return self._secrets.get(key)

    def get_store_resource(self, url: str, use_cache: bool = True) -> Any:
        """A data item for a local path or ``s3://`` URL (``.get()`` bytes, ``.local()`` a path)."""
        from .resources import get_store_resource

        return get_store_resource(url, use_cache=use_cache)

    def get_remote_endpoint(self, name: str, external: bool = True) -> str:
        """The invoke URL of a function: a URL is returned as is; a name is looked up in
        ``GRAPHPACK_ENDPOINT_<NAME>`` and then in the local deploy state."""
        if "://" in name:
            return name
        short = name.split("/")[-1].split(":")[0].lstrip(".")
        env_key = "GRAPHPACK_ENDPOINT_" + re.sub(r"[^A-Za-z0-9]", "_", short).upper()
        if os.environ.get(env_key):
            return os.environ[env_key]
        from .resources import endpoint_from_state

        url = endpoint_from_state(short)
        if url:
            return url
        raise GraphpackError(
            f"cannot resolve the endpoint of function {name!r}: set {env_key} or deploy it first"
        )

    def push_error(self, event: Any, message: str, source: str | None = None, **kw: Any) -> None:
        """Send a failed event (step, error, original body) to the error stream; never fails the request."""
        if self._error_pusher is None:
            return
        extra = {"function": getattr(self.server, "running_function_uri", ""), "host": socket.gethostname(),
                 "worker": self.worker_id, "traceparent": getattr(event, "traceparent", None), **kw}
        try:
            self._error_pusher(source or "_handler", message, getattr(event, "body", None),
                               getattr(event, "id", None), **extra)
        except Exception as exc:  # noqa: BLE001 - pushing an error must not fail the request
            self.logger.warn(f"failed to push an error to the error stream: {exc}")


__all__ = ["GraphContext", "Logger"]
