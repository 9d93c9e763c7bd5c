"""Metrics of a served function, recorded per worker process in plain Python objects.

``graphpack serve`` turns recording on (:func:`enable`, unless ``$GRAPHPACK_METRICS`` is ``0``/
``off``); the mock server and Nuclio's processor leave it off, and then nothing is wrapped and
nothing is counted. What is recorded:

- per step (its full name, as errors name it): events, errors (exceptions raised by the step
  itself, not by a step it routed to, and not ``HTTPError`` below 500) and a latency histogram;
- per queue step (its name in the graph): records pushed (durable), consumed per shard, retried,
  dead-lettered, and the consumer's lag per shard (records and seconds);
- HTTP: answers by status code, 503 busy rejections, requests in flight.

The hot path is a few integer and float additions on ``__slots__`` objects with no call between
a read and its write, so concurrent threads of one process do not lose increments under the GIL.
The prometheus-client's own metric objects cost ~15-30 µs per request in multiprocess mode (see
bench/http.py), more than the 5% of a request's time we allow; so workers keep these counters
and :mod:`graphpack.runtime.metrics_export` writes, aggregates and renders them in Prometheus'
text format.
"""
from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from typing import Any, Callable

from ..errors import HTTPError, StepError

ENV = "GRAPHPACK_METRICS"  # "0", "off", "false" or "no" turns metrics off in graphpack serve
#: upper bounds of the latency histogram's buckets (seconds); +Inf follows
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def wanted() -> bool:
    """Are metrics on for this process (``$GRAPHPACK_METRICS`` not off)?"""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


class StepStats:
    """Events, errors and the latency histogram of one step."""

    __slots__ = ("events", "errors", "seconds", "buckets")

    def __init__(self) -> None:
        self.events = 0
        self.errors = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float) -> None:
        index = bisect_left(BUCKETS, seconds)
        self.events += 1
        self.seconds += seconds
        self.buckets[index] += 1

    def failed(self, exc: BaseException) -> None:
        """Count ``exc`` unless it is another step's failure passing through or a deliberate answer."""
        if isinstance(exc, StepError) or (isinstance(exc, HTTPError) and exc.status_code < 500):
            return
        self.errors += 1

    def values(self) -> list:
        return [self.events, self.errors, self.seconds, list(self.buckets)]


class QueueStats:
    """One queue's counters in this process; the consumer's lag per shard."""

    __slots__ = ("pushed", "retried", "dead_lettered", "consumed", "lag", "lock")

    def __init__(self) -> None:
        self.pushed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.consumed: dict[int, int] = {}
        self.lag: dict[int, tuple[int, float]] = {}  # shard -> (records, seconds)
        self.lock = threading.Lock()  # the writer's threads report pushes concurrently

    def stored(self, error: BaseException | None) -> None:
        """A push's done-callback: count it once durable."""
        if error is None:
            with self.lock:
                self.pushed += 1

    def values(self) -> dict:
        return {"pushed": self.pushed, "retried": self.retried, "dead_lettered": self.dead_lettered,
                "consumed": {str(k): v for k, v in self.consumed.items()},
                "lag": {str(k): list(v) for k, v in self.lag.items()}}


class Recorder:
    """This worker's metrics of one function."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.steps: dict[str, StepStats] = {}
        self.queues: dict[str, QueueStats] = {}
        self.codes: dict[int, int] = {}
        self.busy = 0
        self.in_flight: Callable[[], int] = lambda: 0
        self.collectors: list[Callable[[], None]] = []  # run before a snapshot (lag, gauges)

    def step(self, name: str) -> StepStats:
        stats = self.steps.get(name)
        if stats is None:
            stats = self.steps[name] = StepStats()
        return stats

    def queue(self, name: str) -> QueueStats:
        stats = self.queues.get(name)
        if stats is None:
            stats = self.queues[name] = QueueStats()
        return stats

    def reply(self, status: int) -> None:
        """One HTTP answer sent (called on the event loop's thread)."""
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1

    def snapshot(self) -> dict:
        """Everything recorded so far, as JSON-ready data."""
        for collect in list(self.collectors):
            try:
                collect()
            except Exception:  # noqa: BLE001 - a gauge that cannot be read is left out this time
                pass
        return {
            "function": self.function,
            "pid": os.getpid(),
            "time": time.time(),
            "steps": {name: stats.values() for name, stats in list(self.steps.items())},
            "queues": {name: stats.values() for name, stats in list(self.queues.items())},
            "http": {"codes": {str(k): v for k, v in list(self.codes.items())}, "busy": self.busy,
                     "in_flight": self.in_flight()},
        }


class ConsumerWatch:
    """A queue consumer's figures: records handled per shard, retried, dead-lettered, and its lag
    per owned shard (records after the last one handled, by the queue's ``end_offset``; seconds
    since the last handled record's event time while records remain, 0 once caught up)."""

    def __init__(self, stats: QueueStats) -> None:
        self.stats = stats
        self.consumer: Any = None  # set by watch(consumer)
        self.last: dict[int, tuple[int, Any]] = {}  # shard -> (offset handled last, its record's "time")

    def watch(self, consumer: Any, current: Recorder) -> None:
        """Report ``consumer``'s figures in ``current``'s snapshots."""
        self.consumer = consumer
        current.collectors.append(self.collect)

    def handled(self, item: Any, record: Any) -> None:
        """Call after ``item`` (read from the queue, decoded to ``record``) was handled."""
        consumed = self.stats.consumed
        consumed[item.shard] = consumed.get(item.shard, 0) + 1
        self.last[item.shard] = (item.offset, record.get("time") if isinstance(record, dict) else None)

    def failed(self, item: Any, exc: BaseException, attempt: int) -> None:
        """The consumer's ``on_error``: an attempt failed; count it when another one follows."""
        if attempt < self.consumer.max_attempts and exc.__class__.__name__ != "RecordError":
            self.stats.retried += 1

    def collect(self) -> None:
        """Update the dead-letter count and the lag gauges (before a snapshot)."""
        consumer, stats = self.consumer, self.stats
        stats.dead_lettered = consumer.dead_lettered
        lag: dict[int, tuple[int, float]] = {}
        for shard in sorted(consumer.owned):
            end = consumer.queue.end_offset(shard)
            if end is None:  # the backend cannot tell (s3, v3io, kafka): no lag gauges
                continue
            last = self.last.get(shard)
            done = last[0] if last is not None else consumer.queue.committed(shard, consumer.group)
            records = max(0, end - (done + 1 if done is not None else 0))
            seconds = 0.0
            if records and last is not None and last[1]:
                seconds = max(0.0, time.time() - _timestamp(last[1]))
            lag[shard] = (records, seconds)
        stats.lag = lag


def _timestamp(value: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return time.time()


recorder: Recorder | None = None


def enable(function: str) -> Recorder:
    """Record metrics for ``function`` in this process (graphpack serve calls it per worker)."""
    global recorder
    recorder = Recorder(function)
    return recorder


def disable() -> None:
    global recorder
    recorder = None


# -- step instrumentation ---------------------------------------------------------------------
def instrument(nodes: list, current: Recorder | None = None) -> None:
    """Time every step of ``nodes`` (routes of routers included) into ``current`` (default: the
    process's recorder); the queue pushers count their durable pushes. A no-op when off."""
    current = current or recorder
    if current is None:
        return
    seen: set[int] = set()
    for node in _with_routes(nodes):
        if id(node) in seen:
            continue
        seen.add(id(node))
        stats = current.step(node.fullname)
        node.call = _timed(node.call, stats, node.is_async)
        if node.body_fn is not None:
            node.body_fn = _timed(node.body_fn, stats, False)
        if node.kind == "queue" and hasattr(node.obj, "stats"):
            node.obj.stats = current.queue(node.name)


def _with_routes(nodes: list) -> list:
    out = []
    for node in nodes:
        out.append(node)
        routes = getattr(node.obj, "routes", None)
        if isinstance(routes, dict):
            out += [route.node for route in routes.values() if hasattr(route, "node")]
    return out


def _timed(fn: Callable, stats: StepStats, is_async: bool) -> Callable:
    clock = time.perf_counter
    if is_async:
        async def timed_async(arg: Any) -> Any:
            start = clock()
            try:
                return await fn(arg)
            except BaseException as exc:
                stats.failed(exc)
                raise
            finally:
                stats.observe(clock() - start)
        return timed_async

    buckets = stats.buckets

    def timed(arg: Any) -> Any:  # the hot path: StepStats.observe inlined
        start = clock()
        try:
            out = fn(arg)
        except BaseException as exc:
            stats.failed(exc)
            stats.observe(clock() - start)
            raise
        elapsed = clock() - start
        stats.events += 1
        stats.seconds += elapsed
        buckets[bisect_left(BUCKETS, elapsed)] += 1
        return out
    return timed


__all__ = ["BUCKETS", "ConsumerWatch", "QueueStats", "Recorder", "StepStats", "enable", "instrument", "recorder", "wanted"]
