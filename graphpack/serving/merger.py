"""``Merge``: join the events that several upstream branches produce for one key.

Events are grouped by ``event.id`` (or by ``key_path`` evaluated over the body, e.g.
``"event['key']"``). When ``expected_num_events`` events of a key have arrived (by default
the number of the step's ``after`` entries), one event goes on with the body returned by
``merge_function(bodies)`` (the bodies in arrival order); until then ``do_event`` returns None,
which the runtime treats as "nothing to pass on". At most ``max_behind`` keys wait at once;
beyond that the oldest incomplete key is dropped with a warning and an error-stream record.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from ..errors import GraphpackError
from .utils import StepToDict

DEFAULT_MAX_BEHIND = 64


class Merge(StepToDict):
    """Join events from several branches by id or key (see the module doc)."""

    def __init__(
        self,
        context: Any = None,
        name: str | None = None,
        full_event: bool | None = None,
        key_path: str | Callable[[Any], Any] | None = None,
        max_behind: int | None = None,
        expected_num_events: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.context = context
        self.name = name or "Merge"
        self.full_event = True if full_event is None else full_event
        self.key_path = key_path
        self.max_behind = DEFAULT_MAX_BEHIND if max_behind is None else int(max_behind)
        if self.max_behind < 1:
            raise GraphpackError(f"Merge {self.name}: max_behind must be >= 1, not {max_behind}")
        if expected_num_events is not None and int(expected_num_events) < 1:
            raise GraphpackError(
                f"Merge {self.name}: expected_num_events must be >= 1, not {expected_num_events}"
            )
        self.expected_num_events = int(expected_num_events) if expected_num_events else None
        self._graph_step = kwargs.pop("graph_step", None)
        self._key_fn = _compile_key(key_path)
        self._pending: OrderedDict[Any, list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def post_init(self, mode: str = "sync") -> None:
        if self.expected_num_events is None:
            self.expected_num_events = self._upstream_count()

    def _upstream_count(self) -> int | None:
        step = self._graph_step
        if step is None:
            step = _find_step(getattr(self.context, "root", None), self.name)
        after = getattr(step, "after", None)
        if after is None and isinstance(step, dict):
            after = step.get("after")
        return len(after) if after else None

    def get_join_key(self, event: Any) -> Any:
        """The key events are joined by (override to change)."""
        if self._key_fn is None:
            return event.id
        return self._key_fn(event.body)

    def merge_function(self, bodies: list[Any]) -> Any:
        """The merged body from the bodies in arrival order (override to change)."""
        return bodies

    def do_event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        """Hold the event until its key is complete; then return the merged event (else None)."""
        expected = self.expected_num_events
        if expected is None:
            expected = self.expected_num_events = self._upstream_count()
            if expected is None:
                raise GraphpackError(
                    f"Merge {self.name}: set expected_num_events (the step has no 'after' list)"
                )
        key = self.get_join_key(event)
        dropped: list[tuple[Any, list[Any]]] = []
        with self._lock:
            group = self._pending.get(key)
            if group is None:
                group = self._pending[key] = []
            group.append(event)
            if len(group) >= expected:
                del self._pending[key]
            else:
                while len(self._pending) > self.max_behind:
                    dropped.append(self._pending.popitem(last=False))
                group = None  # type: ignore[assignment]
        for old_key, events in dropped:
            self._report_dropped(old_key, events, expected)
        if group is None:
            return None
        merged = group[0]
        merged.body = self.merge_function([e.body for e in group])
        return merged

    def _report_dropped(self, key: Any, events: list[Any], expected: int) -> None:
        message = (
            f"Merge {self.name}: dropped key {key!r} with {len(events)} of {expected} events "
            f"(more than max_behind={self.max_behind} keys pending)"
        )
        logger = getattr(self.context, "logger", None)
        if logger is not None:
            logger.warn(message)
        push = getattr(self.context, "push_error", None)
        if push is not None:
            push(events[0], message, source=self.name)

    @property
    def pending(self) -> int:
        """How many keys wait for more events."""
        return len(self._pending)


def _compile_key(key_path: Any) -> Callable[[Any], Any] | None:
    if key_path is None or callable(key_path):
        return key_path
    text = str(key_path)
    if "[" not in text and "(" not in text:  # a plain dot path: "a.b"
        from ..runtime.paths import get_in

        return lambda body: get_in(body, text)
    try:
        return eval(f"lambda event: {text}", {}, {})  # noqa: S307 - user-supplied graph code
    except SyntaxError as exc:
        raise GraphpackError(f"Merge key_path {text!r} is not a valid expression: {exc}") from None


def _find_step(root: Any, name: str) -> Any:
    if root is None:
        return None
    for attr in ("steps", "routes"):
        steps = getattr(root, attr, None)
        if isinstance(steps, dict) and name in steps:
            return steps[name]
    try:
        return root[name]
    except Exception:  # noqa: BLE001 - the root may not support lookup by name
        return None


__all__ = ["Merge"]
