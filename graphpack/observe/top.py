"""``graphpack top``: the deployed functions, steps and queues in a terminal view (rich) refreshed
every ``interval`` seconds, or one snapshot as JSON."""
from __future__ import annotations

import time
from typing import Any, Callable

from .deployment import Deployment
from .snapshot import Sampler


def snapshot_once(load: Callable[[], Deployment], interval: float = 1.0) -> dict:
    """One snapshot: two scrapes ``interval`` seconds apart, so that it has rates."""
    sampler = Sampler(load)
    try:
        sampler.sample()
        time.sleep(interval)
        return sampler.sample()
    finally:
        sampler.close()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f}µs"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _table(title: str, *columns: str) -> Any:
    """A table of ``columns`` (``"name:name"`` holds names, left-aligned; the others figures)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        name, _, kind = column.partition(":")
        table.add_column(name, justify="left" if kind == "name" else "right")
    return table


def render(snapshot: dict) -> Any:
    """The view of one snapshot: a table of functions, then per graph its steps and queues."""
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = []
    when = time.strftime("%H:%M:%S", time.localtime(snapshot["time"]))
    parts.append(Text(f"graphpack top · {snapshot['project_dir']} · target {snapshot['target']} · {when}", style="bold"))
    functions = _table("functions", "function:name", "url:name", "req/s", "5xx/s", "in flight", "503s")
    for name, f in snapshot["functions"].items():
        if f["up"]:
            functions.add_row(name, f["url"], _rate(f["requests_per_s"]), _rate(f["errors_5xx_per_s"]),
                              _count(f["in_flight"]), _count(f["busy_rejections"]))
        else:
            functions.add_row(name, f["url"], Text(f"unreachable: {f['error']}", style="red"), "", "", "")
    parts.append(functions)
    for root, graph in snapshot["graphs"].items():
        steps = _table(f"graph of {root}: steps", "step:name", "function:name", "events/s", "p50", "p99",
                       "errors", "errors/s")
        for name, s in graph["steps"].items():
            failing = "bold red" if s["errors_per_s"] else ""
            steps.add_row(name, ", ".join(s["functions"]), _rate(s["rate"]), _seconds(s["p50"]), _seconds(s["p99"]),
                          Text(_count(s["errors"]), style=failing), Text(_rate(s["errors_per_s"]), style=failing))
        queues = _table(f"graph of {root}: queues", "queue:name", "pushed/s", "consumed/s", "lag", "lag s",
                        "retried", "dead-lettered")
        for name, q in graph["queues"].items():
            queues.add_row(name, _rate(q["push_rate"]), _rate(q["consume_rate"]), _count(q["lag_records"]),
                           f"{q['lag_seconds']:.1f}", _count(q["retried"]), _count(q["dead_lettered"]))
        parts += [steps, queues] if graph["queues"] else [steps]
    return Group(*parts)


def run_top(load: Callable[[], Deployment], interval: float = 1.0, count: int | None = None,
            console: Any = None) -> None:
    """Redraw the view every ``interval`` seconds until interrupted (or ``count`` times)."""
    from rich.live import Live

    sampler = Sampler(load)
    try:
        sampler.sample()
        with Live(console=console, auto_refresh=False, screen=False) as live:
            shown = 0
            while count is None or shown < count:
                time.sleep(interval)
                live.update(render(sampler.sample()), refresh=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        sampler.close()
