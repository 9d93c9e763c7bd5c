"""``ParallelRun``: run every route on a copy of the event and merge their result bodies.

A failing route fails the event (after all routes finished), so the graph's error handler
sees it; no route's result is ever dropped silently.
"""
from __future__ import annotations

import concurrent.futures
import enum
import threading
from typing import Any

from ..errors import HTTPError, StepError
from .routers import BaseModelRouter

EXECUTOR_TYPES = ("thread", "array")


class ParallelRunnerModes(str, enum.Enum):
    """How ParallelRun / VotingEnsemble run their routes (MLRun's names): ``array`` one after the
    other, ``thread`` in threads, ``process`` (runs in threads in graphpack, with a warning)."""

    array = "array"
    process = "process"
    thread = "thread"

    @staticmethod
    def all() -> list["ParallelRunnerModes"]:
        return [ParallelRunnerModes.thread, ParallelRunnerModes.process, ParallelRunnerModes.array]

    def __str__(self) -> str:
        return self.value


class RouteFailed(RuntimeError):
    """A route of a parallel run raised; ``route`` names it, the cause is chained."""

    def __init__(self, router: str, route: str, error: BaseException) -> None:
        self.route = route
        self.error = error
        super().__init__(f"{router}: route {route!r} failed: {type(error).__name__}: {error}")


class RouteRunner:
    """Runs a set of routes on copies of one event, in threads or one after another."""

    def __init__(self, executor_type: str | None, logger: Any = None, max_workers: int | None = None) -> None:
        executor_type = str(executor_type or "thread")
        if executor_type == "process":
            if logger is not None:
                logger.warn("executor_type 'process' is not supported; running routes in threads")
            executor_type = "thread"
        if executor_type not in EXECUTOR_TYPES:
            raise ValueError(
                f"executor_type must be one of {', '.join(EXECUTOR_TYPES)}, not {executor_type!r}"
            )
        self.executor_type = executor_type
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self, n: int) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_workers or max(4, n), thread_name_prefix="graphpack-route"
                )
            return self._pool

    def run(self, routes: dict[str, Any], event: Any, path: str | None = None) -> dict[str, Any]:
        """``{key: result event or exception}`` in route order, for every route."""
        def one(key: str) -> Any:
            child = event.copy()
            if path is not None:
                child.path = path
            result = routes[key].run(child)
            return child if result is None else result

        keys = list(routes)
        outcomes: dict[str, Any] = {}
        if self.executor_type == "array" or len(keys) < 2:
            for key in keys:
                try:
                    outcomes[key] = one(key)
                except Exception as exc:  # noqa: BLE001 - reported by the caller
                    outcomes[key] = exc
            return outcomes
        futures = {key: self._executor(len(keys)).submit(one, key) for key in keys}
        for key in keys:
            try:
                outcomes[key] = futures[key].result()
            except Exception as exc:  # noqa: BLE001 - reported by the caller
                outcomes[key] = exc
        return outcomes

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None


def raise_first_failure(router: str, outcomes: dict[str, Any], logger: Any = None) -> None:
    """Raise for the first failed route (HTTP errors keep their status); log the others."""
    failed = [(k, v) for k, v in outcomes.items() if isinstance(v, BaseException)]
    if not failed:
        return
    if logger is not None and len(failed) > 1:
        for key, exc in failed[1:]:
            logger.error(f"{router}: route {key!r} also failed: {type(exc).__name__}: {exc}")
    key, exc = failed[0]
    if isinstance(exc, (HTTPError, StepError)):  # already names its status / step
        raise exc
    raise RouteFailed(router, key, exc) from exc


class ParallelRun(BaseModelRouter):
    """Run all routes on copies of the event and merge the results into one body.

    The body starts as a copy of the event body when ``extend_event`` is set, else ``{}``;
    ``merger(body, results)`` then updates it with each route's result dict, in route order
    (a non-dict result is stored under its route key). Override ``merger`` to change that.
    """

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        routes: dict | None = None,
        extend_event: bool | None = None,
        executor_type: str | None = None,
        input_path: str | None = None,
        result_path: str | None = None,
        max_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(context, name, routes, input_path=input_path, result_path=result_path, **kwargs)
        self.extend_event = extend_event
        self.executor_type = str(executor_type or "thread")
        self._runner = RouteRunner(executor_type, self.context.logger, max_workers)

    def _pre_handle_event(self, event: Any) -> Any:
        return None

    def _handle_event(self, event: Any) -> Any:
        outcomes = self._runner.run(self.routes, event)
        raise_first_failure(self.name, outcomes, self.context.logger)
        results = {key: result.body for key, result in outcomes.items()}
        if self.extend_event:
            import copy

            body = copy.deepcopy(event.body) if isinstance(event.body, dict) else {}
        else:
            body = {}
        event.body = self.merger(body, results)
        return event

    def merger(self, body: dict, results: dict[str, Any]) -> Any:
        """Merge route results into ``body`` (override to combine differently)."""
        for key, result in results.items():
            if isinstance(result, dict):
                body.update(result)
            else:
                body[key] = result
        return body


__all__ = ["ParallelRun", "ParallelRunnerModes", "RouteFailed"]
