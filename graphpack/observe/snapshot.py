"""Live figures of a deployed project from its functions' ``/metrics`` (Prometheus text format).

A :class:`Sampler` scrapes every function; each :meth:`Sampler.sample` compares the new scrape with
the one before it: rates are counter increases over the time between the two scrapes, p50/p99 come
from the increase of the step duration histograms' buckets (as Prometheus' ``histogram_quantile``),
lag is the latest gauge. Figures are added up per graph (a root function and its children): a
queue is pushed to by one function and consumed by another, a step may run in several. Shared by
``graphpack top`` and ``graphpack ui``.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .deployment import Deployment

METRICS_PATH = "/metrics"
METRICS_OFF = "(served with metrics off: --no-metrics or GRAPHPACK_METRICS=0?)"
STEP_EVENTS = "graphpack_step_events_total"
STEP_ERRORS = "graphpack_step_errors_total"
STEP_DURATION = "graphpack_step_duration_seconds_bucket"
QUEUE_PUSHED = "graphpack_queue_records_pushed_total"
QUEUE_CONSUMED = "graphpack_queue_records_consumed_total"
QUEUE_RETRIED = "graphpack_queue_records_retried_total"
QUEUE_DEAD = "graphpack_queue_records_dead_lettered_total"
QUEUE_LAG = "graphpack_queue_lag_records"
QUEUE_LAG_SECONDS = "graphpack_queue_lag_seconds"
HTTP_REQUESTS = "graphpack_http_requests_total"
HTTP_BUSY = "graphpack_http_busy_rejections_total"
HTTP_IN_FLIGHT = "graphpack_http_requests_in_flight"

Series = list[tuple[dict[str, str], float]]


@dataclass
class Scrape:
    """One function's metrics at one moment: sample name -> [(labels, value)], or an error."""

    at: float  # time.monotonic()
    samples: dict[str, Series] = field(default_factory=dict)
    error: str = ""


def parse(text: str) -> dict[str, Series]:
    """Samples of a Prometheus text exposition, by sample name (``_total``, ``_bucket`` ... kept)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Series] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), float(sample.value)))
    return dict(out)


def scrape(client: Any, url: str) -> Scrape:
    """GET ``url``/metrics with an httpx client; a failure is a Scrape with ``error`` set."""
    import httpx

    at = time.monotonic()
    target = url.rstrip("/") + METRICS_PATH
    try:
        response = client.get(target)
    except httpx.HTTPError as exc:
        return Scrape(at, error=f"{target}: {exc or type(exc).__name__}")
    if response.status_code != 200:
        return Scrape(at, error=f"{target} answered {response.status_code} {METRICS_OFF}")
    try:
        return Scrape(at, parse(response.text))
    except ValueError as exc:
        return Scrape(at, error=f"{target}: not the Prometheus text format ({exc}) {METRICS_OFF}")


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``{upper bound: count}`` (linear within the
    bucket it falls in; the highest finite bound when it falls in +Inf); None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _key(labels: dict[str, str]) -> tuple:
    return tuple(sorted(labels.items()))


def increases(now: Scrape, before: Scrape | None, name: str) -> Series:
    """Each series of counter ``name``: its increase since ``before`` (its whole value without
    ``before``, or when it went down: the process restarted)."""
    old = {_key(labels): value for labels, value in (before.samples.get(name, []) if before else [])}
    out = []
    for labels, value in now.samples.get(name, []):
        previous = old.get(_key(labels))
        out.append((labels, value if previous is None or value < previous else value - previous))
    return out


def _by(series: Series, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in series:
        out[labels.get(label, "")] += value
    return out


class _Totals:
    """Counters of one graph summed over its functions: cumulative values, increases and rates."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.rate: dict[str, float] = defaultdict(float)

    def add(self, now: Scrape, before: Scrape | None, name: str, label: str, interval: float | None) -> None:
        for key, value in _by(now.samples.get(name, []), label).items():
            self.total[key] += value
        for key, value in _by(increases(now, before, name), label).items():
            self.rate[key] += value / interval if interval else 0.0


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def figures(deployment: Deployment, now: dict[str, Scrape], before: dict[str, Scrape]) -> dict:
    """The snapshot of ``deployment`` from this scrape of each function (``now``) and the previous
    one (``before``, may be empty): per function, per graph its steps and queues. Rates are None
    on a first scrape."""
    functions: dict[str, dict] = {}
    graphs: dict[str, dict] = {}
    for root in sorted({f.root for f in deployment.functions.values()}):
        members = sorted(n for n, f in deployment.functions.items() if f.root == root)
        steps, queues = _graph_figures(members, now, before)
        graphs[root] = {"functions": members, "steps": steps, "queues": queues,
                        "error_stream": deployment.error_stream(root)}
    for name, function in sorted(deployment.functions.items()):
        functions[name] = _function_figures(function.url, function.root, now[name], before.get(name))
    intervals = [now[n].at - before[n].at for n in now if n in before and not now[n].error]
    return {"time": time.time(), "interval": _round(max(intervals)) if intervals else None,
            "project_dir": str(deployment.project_dir), "target": deployment.target,
            "functions": functions, "graphs": graphs}


def _interval(now: Scrape, before: Scrape | None) -> float | None:
    if before is None or before.error or now.error or now.at <= before.at:
        return None
    return now.at - before.at


def _graph_figures(members: list[str], now: dict[str, Scrape], before: dict[str, Scrape]) -> tuple[dict, dict]:
    events, errors = _Totals(), _Totals()
    pushed, consumed, retried, dead = _Totals(), _Totals(), _Totals(), _Totals()
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    runs_in: dict[str, list[str]] = defaultdict(list)
    lag: dict[str, float] = defaultdict(float)
    lag_seconds: dict[str, float] = defaultdict(float)
    rated = False
    for name in members:
        scrape_now, scrape_before = now[name], before.get(name)
        if scrape_now.error:
            continue
        interval = _interval(scrape_now, scrape_before)
        rated = rated or interval is not None
        previous = scrape_before if interval is not None else None
        events.add(scrape_now, previous, STEP_EVENTS, "step", interval)
        errors.add(scrape_now, previous, STEP_ERRORS, "step", interval)
        for labels, value in increases(scrape_now, previous, STEP_DURATION):
            buckets[labels.get("step", "")][float(labels.get("le", "inf"))] += value
        for step in _by(scrape_now.samples.get(STEP_EVENTS, []), "step"):
            runs_in[step].append(name)
        for totals, metric in ((pushed, QUEUE_PUSHED), (consumed, QUEUE_CONSUMED), (retried, QUEUE_RETRIED),
                               (dead, QUEUE_DEAD)):
            totals.add(scrape_now, previous, metric, "queue", interval)
        for queue, value in _by(scrape_now.samples.get(QUEUE_LAG, []), "queue").items():
            lag[queue] += value
        for labels, value in scrape_now.samples.get(QUEUE_LAG_SECONDS, []):
            queue = labels.get("queue", "")
            lag_seconds[queue] = max(lag_seconds[queue], value)
    steps = {}
    for step in sorted(set(events.total) | set(errors.total) | set(buckets)):
        steps[step] = {"functions": runs_in.get(step, []), "events": events.total[step],
                       "errors": errors.total[step],
                       "rate": _round(events.rate[step]) if rated else None,
                       "errors_per_s": _round(errors.rate[step]) if rated else None,
                       "p50": _round(quantile(0.5, buckets[step]), 6), "p99": _round(quantile(0.99, buckets[step]), 6)}
    queues = {}
    for queue in sorted(set(pushed.total) | set(consumed.total) | set(lag) | set(lag_seconds)):
        queues[queue] = {"pushed": pushed.total[queue], "consumed": consumed.total[queue],
                         "retried": retried.total[queue], "dead_lettered": dead.total[queue],
                         "push_rate": _round(pushed.rate[queue]) if rated else None,
                         "consume_rate": _round(consumed.rate[queue]) if rated else None,
                         "lag_records": lag[queue], "lag_seconds": _round(lag_seconds[queue])}
    return steps, queues


def _function_figures(url: str, root: str, now: Scrape, before: Scrape | None) -> dict:
    if now.error:
        return {"url": url, "root": root, "up": False, "error": now.error}
    interval = _interval(now, before)
    previous = before if interval is not None else None
    requests = _by(now.samples.get(HTTP_REQUESTS, []), "code")
    new = _by(increases(now, previous, HTTP_REQUESTS), "code")
    failed = sum(v for code, v in new.items() if code.startswith("5"))
    return {"url": url, "root": root, "up": True, "error": "",
            "requests": sum(requests.values()),
            "requests_per_s": _round(sum(new.values()) / interval) if interval else None,
            "errors_5xx_per_s": _round(failed / interval) if interval else None,
            "busy_rejections": sum(v for _, v in now.samples.get(HTTP_BUSY, [])),
            "in_flight": sum(v for _, v in now.samples.get(HTTP_IN_FLIGHT, []))}


class Sampler:
    """Scrapes every deployed function and keeps the previous scrape, so that each ``sample()``
    gives figures over the time since the last one. ``load`` re-reads the deployment each time
    (functions restarted on other ports, a redeploy)."""

    def __init__(self, load: Callable[[], Deployment], timeout: float = 2.0) -> None:
        import httpx

        self.load = load
        self.client = httpx.Client(timeout=timeout)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="graphpack-scrape")
        self.before: dict[str, Scrape] = {}
        self.last_deployment: Deployment | None = None

    def sample(self) -> dict:
        """Scrape every function at once (one that does not answer delays the others by its timeout
        at most) and compare with the last sample."""
        deployment = self.last_deployment = self.load()
        names = list(deployment.functions)
        scrapes = self.pool.map(lambda name: scrape(self.client, deployment.functions[name].url), names)
        now = dict(zip(names, scrapes))
        snapshot = figures(deployment, now, self.before)
        self.before = now
        return snapshot

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
