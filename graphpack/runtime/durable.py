"""A 2xx means stored (DESIGN §4.9): the queue writes one event produced, and waiting for them.

While the server runs an event it collects the :class:`~graphpack.queues.commit.Ticket` of every
record the event pushed to a queue (:func:`collecting`, a context variable, so that the async
engine's concurrent branches add to the same list). The event is acknowledged (its response
sent, its input offset committed) only once all of them are durable; if one failed, the answer
is that failure (503 with ``Retry-After`` for a storage error), never a 2xx.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Failure = tuple[str, BaseException]  # (step, error)

_WRITES: ContextVar[Writes | None] = ContextVar("graphpack_writes", default=None)


class Writes:
    """The queue writes of one event: ``(step, ticket)`` pairs."""

    __slots__ = ("tickets",)

    def __init__(self) -> None:
        self.tickets: list[tuple[str, Any]] = []

    def add(self, step: str, ticket: Any) -> None:
        self.tickets.append((step, ticket))

    def failure(self) -> Failure | None:
        """The first failed write among those done."""
        for step, ticket in self.tickets:
            error = ticket.error()
            if error is not None:
                return step, error
        return None

    def wait(self, timeout: float | None = None) -> Failure | None:
        """Block until every write ended; the first failure, or None when all are stored."""
        for step, ticket in self.tickets:
            try:
                ticket.wait(timeout)
            except Exception:  # noqa: BLE001 - reported below, after the others ended too
                pass
        return self.failure()

    def check(self, timeout: float | None = None) -> None:
        """Block until every write ended; raise the first failure's error (a queue consumer
        calls this before it commits the batch the event came in)."""
        failure = self.wait(timeout)
        if failure is not None:
            raise failure[1]

    def when_done(self, callback: Callable[[Failure | None], Any]) -> None:
        """Call ``callback(failure or None)`` once every write ended (from the writer's thread)."""
        tickets = self.tickets
        if len(tickets) == 1:
            step, ticket = tickets[0]
            ticket.add_done_callback(lambda error: callback(None if error is None else (step, error)))
            return
        left = [len(tickets)]
        lock = threading.Lock()

        def one_done(_: BaseException | None) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                callback(self.failure())

        for _, ticket in tickets:
            ticket.add_done_callback(one_done)


def current() -> Writes | None:
    """The writes of the event being run, when the server collects them."""
    return _WRITES.get()


@contextmanager
def collecting() -> Iterator[Writes]:
    """Collect the queue writes of the event run inside the block."""
    writes = Writes()
    token = _WRITES.set(writes)
    try:
        yield writes
    finally:
        _WRITES.reset(token)
