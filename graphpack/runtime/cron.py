"""Cron schedules (5 fields, optional leading seconds field) and intervals for cron triggers."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAMES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
          "oct": 10, "nov": 11, "dec": 12, "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def parse_interval(text: str) -> float:
    """Seconds in an interval such as ``"30s"``, ``"1m30s"``, ``"250ms"``."""
    total, pos = 0.0, 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip()):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text.strip()) or total <= 0:
        raise ValueError(f"invalid interval {text!r}")
    return total


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = int(_NAMES.get(a, a)), int(_NAMES.get(b, b))
        else:
            start = int(_NAMES.get(part, part))
            end = high if step > 1 else start
        if start < low or end > high or start > end:
            raise ValueError(f"cron field {text!r} out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


class CronSchedule:
    """Matches datetimes against a cron expression; ``next_after(t)`` finds the next firing."""

    def __init__(self, expression: str) -> None:
        text = expression.strip()
        if text.startswith("@every "):
            raise ValueError("use an interval for @every")
        text = _MACROS.get(text, text)
        fields = text.split()
        if len(fields) == 5:
            fields = ["0"] + fields
        if len(fields) != 6:
            raise ValueError(f"invalid cron schedule {expression!r}")
        self.seconds = _field(fields[0], 0, 59)
        self.minutes = _field(fields[1], 0, 59)
        self.hours = _field(fields[2], 0, 23)
        self.days = _field(fields[3], 1, 31)
        self.months = _field(fields[4], 1, 12)
        self.weekdays = {d % 7 for d in _field(fields[5], 0, 7)}
        self._any_day = fields[3] in ("*", "?")
        self._any_weekday = fields[5] in ("*", "?")

    def matches(self, t: datetime) -> bool:
        if t.second not in self.seconds or t.minute not in self.minutes or t.hour not in self.hours:
            return False
        if t.month not in self.months:
            return False
        day_ok, weekday_ok = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        if self._any_day or self._any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, t: datetime) -> datetime:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_ok(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            if self.matches(t):
                return t
            t += timedelta(seconds=1)
        raise ValueError("cron schedule never fires")

    def _day_ok(self, t: datetime) -> bool:
        day_ok, weekday_ok = t.day in self.days, (t.isoweekday() % 7) in self.weekdays
        return (day_ok and weekday_ok) if (self._any_day or self._any_weekday) else (day_ok or weekday_ok)
