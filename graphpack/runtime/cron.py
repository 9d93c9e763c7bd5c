"""The cron dialect of Nuclio's cron trigger, checked at build time and run by the processor.

A trigger has a ``schedule`` or an ``interval``. A schedule is what Nuclio's parser (robfig/cron
with an optional seconds field and descriptors) accepts:

- 5 fields ``minute hour day-of-month month day-of-week`` or 6 with a leading ``second``; each
  field a comma list of ``*``, ``?``, ``N`` or ``N-M``, optionally ``/step``; month and weekday
  names (``jan``, ``mon``); weekdays 0-6 (Sunday 0). Nothing else (no ``L``, ``W``, ``#``, ``H``);
- ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly``;
- ``@every <duration>`` (a Go duration such as ``90s`` or ``1h30m``; whole seconds, at least 1s).

An interval is a Go duration (``"30s"``, ``"250ms"``). Expressions are checked here and their
firing times computed by croniter; ``@every`` and intervals need no third-party code.
"""
from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from .deps import require

_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_NO_NAMES: dict[str, int] = {}
# (name, low, high, names) per field
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, _NO_NAMES), ("minute", 0, 59, _NO_NAMES), ("hour", 0, 23, _NO_NAMES),
    ("day of month", 1, 31, _NO_NAMES), ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _WEEKDAYS))
DESCRIPTORS = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
               "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
               "@hourly": "0 0 * * * *"}
_TERM = re.compile(r"^(\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(\d+))?$")


class Schedule(Protocol):
    def next_after(self, t: datetime) -> datetime:
        """The first firing strictly after ``t``."""


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``"1m30s"``, ``"250ms"``, ``"1.5h"``); ValueError unless > 0."""
    raw = str(text).strip()
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not raw or pos != len(raw):
        raise ValueError(f"{text!r} is not a duration (use e.g. '30s', '5m', '1h30m', '250ms')")
    if total <= 0:
        raise ValueError(f"duration {text!r} must be above zero")
    return total


def _value(text: str, field: tuple) -> int:
    name, low, high, names = field
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ValueError(f"{name} field: {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} field: {value} is outside {low}-{high}")
    return value


def _field(text: str, field: tuple) -> str:
    """One field in croniter's numeric form (names resolved, ``N/s`` as ``N-high/s``)."""
    name, low, high, _ = field
    terms = []
    for term in text.lower().split(","):
        match = _TERM.match(term)
        if not match:
            raise ValueError(f"{name} field: {term!r} is not *, ?, N, N-M or one of them with /step")
        body, step = match.group(1), match.group(2)
        if step is not None and int(step) < 1:
            raise ValueError(f"{name} field: step {step} must be at least 1")
        if body in ("*", "?"):
            start, end = low, high
        elif "-" in body:
            first, last = body.split("-", 1)
            start, end = _value(first, field), _value(last, field)
            if start > end:
                raise ValueError(f"{name} field: range {term!r} runs backwards")
        else:
            start = _value(body, field)
            end = high if step is not None else start
        terms.append(f"{start}-{end}/{step or 1}" if start != end else str(start))
    return ",".join(terms)


class CronSchedule:
    """A cron expression (5 or 6 fields or a descriptor), firing in UTC."""

    def __init__(self, expression: str) -> None:
        text = " ".join(str(expression).split())
        text = DESCRIPTORS.get(text.lower(), text)
        fields = text.split(" ")
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ValueError(f"invalid cron schedule {expression!r}: expected 5 fields (minute hour "
                             "day-of-month month day-of-week), 6 with seconds first, @every or @hourly-style")
        try:
            numeric = [_field(f, spec) for f, spec in zip(fields, _FIELDS)]
        except ValueError as exc:
            raise ValueError(f"invalid cron schedule {expression!r}: {exc}") from None
        # robfig/cron: day-of-month and day-of-week are ANDed when either starts with * or ?
        self._and_days = fields[3][:1] in ("*", "?") or fields[5][:1] in ("*", "?")
        self.expression = " ".join(numeric)
        self.text = str(expression)
        self.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))  # a schedule that never fires fails now

    def next_after(self, t: datetime) -> datetime:
        croniter = require("croniter", "croniter", f"cron schedule {self.text!r}").croniter
        start = _utc(t)
        try:
            found = croniter(self.expression, start, day_or=not self._and_days, second_at_beginning=True,
                             max_years_between_matches=30).get_next(datetime)
        except Exception as exc:  # noqa: BLE001 - croniter raises its own CroniterError family
            raise ValueError(f"cron schedule {self.text!r} never fires ({exc})") from None
        return _utc(found)


class Every:
    """``@every <duration>``: whole seconds (at least one), counted from the previous firing."""

    def __init__(self, duration: str) -> None:
        seconds = parse_duration(duration)
        self.delay = timedelta(seconds=max(1, math.floor(seconds)))
        self.text = f"@every {duration}"

    def next_after(self, t: datetime) -> datetime:
        return _utc(t).replace(microsecond=0) + self.delay


class Interval:
    """The ``interval`` attribute: fires every ``duration`` (sub-second allowed)."""

    def __init__(self, duration: str) -> None:
        self.delay = timedelta(seconds=parse_duration(duration))
        self.text = str(duration)

    def next_after(self, t: datetime) -> datetime:
        return _utc(t) + self.delay


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def parse_schedule(expression: str) -> Schedule:
    """A Schedule from a trigger's ``schedule`` attribute; ValueError naming what is wrong."""
    text = str(expression or "").strip()
    if text.lower().startswith("@every"):
        duration = text[len("@every"):].strip()
        if not duration:
            raise ValueError(f"invalid cron schedule {expression!r}: @every needs a duration, e.g. '@every 5m'")
        try:
            return Every(duration)
        except ValueError as exc:
            raise ValueError(f"invalid cron schedule {expression!r}: {exc}") from None
    if text.startswith("@") and text.lower() not in DESCRIPTORS:
        raise ValueError(f"invalid cron schedule {expression!r}: unknown descriptor "
                         f"(known: {', '.join(sorted(DESCRIPTORS))}, @every <duration>)")
    return CronSchedule(text)


def trigger_schedule(attributes: dict) -> Schedule:
    """The Schedule of a cron trigger's attributes (exactly one of schedule or interval)."""
    schedule, interval = attributes.get("schedule"), attributes.get("interval")
    if bool(schedule) == bool(interval):
        raise ValueError("set exactly one of schedule or interval")
    if schedule:
        return parse_schedule(str(schedule))
    try:
        return Interval(str(interval))
    except ValueError as exc:
        raise ValueError(f"invalid interval {interval!r}: {exc}") from None


class Clock:
    """Wall-clock time and waiting; tests pass a fake one."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def wait_until(self, t: datetime, stop: asyncio.Event) -> bool:
        """Wait until ``t`` or until ``stop`` is set; True when stopped."""
        delay = (t - self.now()).total_seconds()
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(delay, 0))
            return True
        except asyncio.TimeoutError:
            return stop.is_set()


async def run_schedule(schedule: Schedule, fire: Callable[[datetime], Awaitable[Any]], stop: asyncio.Event,
                       clock: Clock | None = None) -> None:
    """Call ``fire(t)`` at each firing time ``t`` until ``stop``; firings missed while a call ran are
    skipped (the next one after now follows), as Nuclio's cron trigger does."""
    clock = clock or Clock()
    due = schedule.next_after(clock.now())
    while not stop.is_set():
        if await clock.wait_until(due, stop):
            return
        await fire(due)
        following = schedule.next_after(due)
        now = clock.now()
        due = following if following > now else schedule.next_after(now)


__all__ = ["Clock", "CronSchedule", "DESCRIPTORS", "Every", "Interval", "Schedule", "parse_duration",
           "parse_schedule", "run_schedule", "trigger_schedule"]
