"""Errors graphpack raises, and the HTTP errors a step may raise on purpose."""
from __future__ import annotations


class GraphpackError(Exception):
    """A user mistake in a graph, function, project or command (a one-line message)."""


class HTTPError(Exception):
    """Raised by a step to answer the request with ``status`` and ``message``."""

    status_code = 500

    def __init__(self, status: int | str | None = None, message: str = "") -> None:
        if isinstance(status, str) and not message:
            message, status = status, None
        if status is not None:
            self.status_code = int(status)
        self.message = message
        super().__init__(message)


class BadRequestError(HTTPError):
    """The request data is wrong (400)."""

    status_code = 400

    def __init__(self, message: str = "bad request") -> None:
        super().__init__(400, message)


class NotReadyError(HTTPError):
    """The model or step is not ready yet (503)."""

    status_code = 503

    def __init__(self, message: str = "not ready") -> None:
        super().__init__(503, message)


class StepError(Exception):
    """An exception raised inside a step, remembered with the step's name."""

    def __init__(self, step: str, error: BaseException) -> None:
        self.step = step
        self.error = error
        super().__init__(f"{step}: {type(error).__name__}: {error}")


class RequestFailed(RuntimeError):
    """``server.test()`` got a status >= 300 (and ``silent`` was not set)."""

    def __init__(self, status_code: int, body: object) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(f"failed ({status_code}): {body}")


# MLRun's names for these errors (``mlrun.errors``, ``mlrun.serving.states.GraphError``), so that
# ``except`` clauses written for MLRun catch what graphpack raises for the same mistakes.
MLRunBaseError = GraphpackError
MLRunInvalidArgumentError = GraphpackError
MLRunInvalidArgumentTypeError = GraphpackError
MLRunRuntimeError = GraphpackError
MLRunValueError = GraphpackError
MLRunNotFoundError = GraphpackError
MLRunConflictError = GraphpackError
MLRunMissingDependencyError = GraphpackError
GraphError = GraphpackError
MLRunHTTPError = HTTPError
MLRunHTTPStatusError = HTTPError
MLRunBadRequestError = BadRequestError
MLRunServiceUnavailableError = NotReadyError
