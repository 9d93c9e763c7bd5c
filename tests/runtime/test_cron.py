"""One cron dialect: what the build accepts is what the processor fires, at the right times.

Schedules go through the build (a function with the trigger is planned and rendered), then the
built function.yaml's trigger runs in the processor's cron loop against the real entry module,
on a fake clock (no sleeping)."""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from graphpack import new_function
from graphpack.errors import GraphpackError
from graphpack.packager import plan_and_render
from graphpack.runtime import processor
from graphpack.runtime.cron import Clock
from graphpack.triggers import CronTrigger

UTC = timezone.utc
START = datetime(2026, 1, 30, 23, 59, 30, 250000, tzinfo=UTC)  # a Friday


def at(*parts):
    return datetime(*parts, tzinfo=UTC)


# (attributes, the first firings after START), the times worked out by hand
ACCEPTED = [
    ({"schedule": "*/15 * * * *"}, [at(2026, 1, 31, 0, 0), at(2026, 1, 31, 0, 15), at(2026, 1, 31, 0, 30)]),
    ({"schedule": "0 2 * * *"}, [at(2026, 1, 31, 2, 0), at(2026, 2, 1, 2, 0)]),
    ({"schedule": "30 * * * * *"}, [at(2026, 1, 31, 0, 0, 30), at(2026, 1, 31, 0, 1, 30)]),
    ({"schedule": "*/20 59 23 * * *"}, [at(2026, 1, 30, 23, 59, 40), at(2026, 1, 31, 23, 59, 0)]),
    ({"schedule": "0 9 * * MON-FRI"}, [at(2026, 2, 2, 9, 0), at(2026, 2, 3, 9, 0)]),
    ({"schedule": "0 0 1,15 * *"}, [at(2026, 2, 1, 0, 0), at(2026, 2, 15, 0, 0), at(2026, 3, 1, 0, 0)]),
    ({"schedule": "0 0 13 * 5"}, [at(2026, 2, 6), at(2026, 2, 13), at(2026, 2, 20)]),  # OR: 13th or Friday
    ({"schedule": "0 12 ? JAN,feb SUN"}, [at(2026, 2, 1, 12), at(2026, 2, 8, 12)]),
    ({"schedule": "5/20 * * * *"}, [at(2026, 1, 31, 0, 5), at(2026, 1, 31, 0, 25), at(2026, 1, 31, 0, 45)]),
    ({"schedule": "@hourly"}, [at(2026, 1, 31, 0, 0), at(2026, 1, 31, 1, 0)]),
    ({"schedule": "@daily"}, [at(2026, 1, 31), at(2026, 2, 1)]),
    ({"schedule": "@midnight"}, [at(2026, 1, 31), at(2026, 2, 1)]),
    ({"schedule": "@weekly"}, [at(2026, 2, 1), at(2026, 2, 8)]),
    ({"schedule": "@monthly"}, [at(2026, 2, 1), at(2026, 3, 1)]),
    ({"schedule": "@yearly"}, [at(2027, 1, 1), at(2028, 1, 1)]),
    ({"schedule": "@annually"}, [at(2027, 1, 1)]),
    ({"schedule": "0 0 29 2 *"}, [at(2028, 2, 29)]),
    ({"schedule": "@every 90s"}, [at(2026, 1, 31, 0, 1, 0), at(2026, 1, 31, 0, 2, 30)]),
    ({"schedule": "@every 1h30m"}, [at(2026, 1, 31, 1, 29, 30), at(2026, 1, 31, 2, 59, 30)]),
    ({"schedule": "@every 500ms"}, [at(2026, 1, 30, 23, 59, 31), at(2026, 1, 30, 23, 59, 32)]),  # 1s at least
    ({"interval": "250ms"}, [START + timedelta(seconds=0.25), START + timedelta(seconds=0.5)]),
    ({"interval": "1m30s"}, [START + timedelta(seconds=90), START + timedelta(seconds=180)]),
    ({"interval": "1.5h"}, [START + timedelta(hours=1.5)]),
]

REJECTED = ["0 0 L * *", "0 0 * * MON#1", "0 0 15W * *", "one two three four five", "61 * * * *",
            "* * * *", "0 0 0 0 0 0 0", "0 0 30 2 *", "0 24 * * *", "0 0 * * 7", "0 0 * 13 *", "5-1 * * * *",
            "*/0 * * * *", "@every", "@every 5 minutes", "@every 0s", "@fortnightly", "H * * * *", ""]


def built_function(tmp_path, attributes):
    """Build a function with one cron trigger; write its context; return its directory."""
    from graphpack.packager import write_contexts

    fn = new_function("clock", "crons", filename=str(tmp_path / "code.py"))
    (tmp_path / "code.py").write_text("class Echo:\n    def do(self, body):\n        return body\n")
    fn.set_topology("flow").to("Echo", name="echo").respond()
    fn.add_trigger("tick", {"kind": "cron", "attributes": {**attributes, "event": {"body": "tick"}}})
    contexts = plan_and_render(fn, "crons", "local")
    return write_contexts(contexts, tmp_path / "build")[0]


class FakeClock(Clock):
    def __init__(self, now):
        self.time = now

    def now(self):
        return self.time

    async def wait_until(self, t, stop):
        assert t > self.time - timedelta(microseconds=1), "a firing in the past"
        self.time = max(self.time, t)
        await asyncio.sleep(0)
        return stop.is_set()


class Recorder:
    """Stands in for the HTTP server's handler thread: runs the call inline and records when."""

    def __init__(self, clock, want):
        self.clock, self.want, self.fired, self.answers = clock, want, [], []
        self.stop = asyncio.Event()

    async def run(self, call, event):
        self.fired.append(self.clock.now())
        self.answers.append(call(event))
        if len(self.fired) == self.want:
            self.stop.set()


@pytest.mark.parametrize("attributes, expected", ACCEPTED, ids=[str(a) for a, _ in ACCEPTED])
def test_every_accepted_schedule_fires_at_the_right_times(tmp_path, attributes, expected, monkeypatch):
    fdir = built_function(tmp_path, attributes)
    config = processor.load_config(fdir)
    trigger = config["spec"]["triggers"]["tick"]
    monkeypatch.syspath_prepend(str(fdir))
    host = processor.FunctionHost(fdir, config, 0)
    clock = FakeClock(START)
    recorder = Recorder(clock, len(expected))
    asyncio.run(processor._cron_loop(host, recorder, "tick", trigger, recorder.stop, clock))
    assert recorder.fired == expected
    assert all(status == 200 and body == b"tick" for status, _, _, body in recorder.answers)


@pytest.mark.parametrize("schedule", REJECTED)
def test_anything_else_is_rejected_at_build_time_naming_the_trigger(tmp_path, schedule):
    with pytest.raises(GraphpackError) as info:
        built_function(tmp_path, {"schedule": schedule})
    message = str(info.value)
    assert "trigger 'tick'" in message and ("schedule" in message) and "\n" not in message
    with pytest.raises(GraphpackError):
        CronTrigger(schedule=schedule)


@pytest.mark.parametrize("interval", ["often", "5", "0s", "-1s", "1d", "1m30"])
def test_bad_intervals_are_rejected_at_build_time(tmp_path, interval):
    with pytest.raises(GraphpackError, match=r"trigger 'tick'.*invalid interval"):
        built_function(tmp_path, {"interval": interval})


def test_a_late_firing_skips_what_it_missed():
    """A call that outlasts the period skips the missed firings (no burst of catch-up calls)."""
    from graphpack.runtime.cron import parse_schedule, run_schedule

    clock = FakeClock(at(2026, 1, 1))
    fired = []
    stop = asyncio.Event()

    async def fire(due):
        fired.append((due, clock.now()))
        clock.time += timedelta(minutes=7)  # the call takes 7 minutes
        if len(fired) == 3:
            stop.set()

    asyncio.run(run_schedule(parse_schedule("*/5 * * * *"), fire, stop, clock))
    assert [due for due, _ in fired] == [at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 15), at(2026, 1, 1, 0, 25)]


# -- every expression the grammar allows: firings against an independent reading of its meaning --
FIELDS = [(0, 59, []), (0, 59, []), (0, 23, []), (1, 31, []),
          (1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
          (0, 6, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"])]


def oracle_set(text, low, high, names):
    """The values a field matches, read directly from the definition (robfig/cron)."""
    def value(word):
        return names.index(word) + low if word in names else int(word)

    out = set()
    for term in text.lower().split(","):
        body, _, step = term.partition("/")
        if body in ("*", "?"):
            start, end = low, high
        elif "-" in body:
            start, end = (value(w) for w in body.split("-"))
        else:
            start = value(body)
            end = high if step else start
        out.update(range(start, end + 1, int(step or 1)))
    return out


def oracle_next(fields, after, years=31):
    """The first time strictly after ``after`` the 6 fields match, or None within ``years``."""
    sec, minute, hour, dom, month, dow = (oracle_set(f, *spec) for f, spec in zip(fields, FIELDS))
    both = not (fields[3][0] in "*?" or fields[5][0] in "*?")
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(366 * years):
        if day.month in month:
            on_dom, on_dow = day.day in dom, day.isoweekday() % 7 in dow
            if (on_dom or on_dow) if both else (on_dom and on_dow):
                for h in sorted(hour):
                    for m in sorted(minute):
                        for s in sorted(sec):
                            t = day.replace(hour=h, minute=m, second=s)
                            if t > after:
                                return t
        day += timedelta(days=1)
    return None


def field_text(draw, index):
    from hypothesis import strategies as st

    low, high, names = FIELDS[index]

    def word(v):
        return names[v - low] if names and draw(st.booleans()) else str(v)

    terms = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["*", "?", "n", "range"]))
        a = draw(st.integers(low, high))
        if kind in ("*", "?"):
            body = kind
        elif kind == "n":
            body = word(a)
        else:
            b = draw(st.integers(a, high))
            body = f"{word(a)}-{word(b)}"
        step = draw(st.one_of(st.none(), st.integers(1, high - low + 1)))
        terms.append(body + (f"/{step}" if step is not None else ""))
    return ",".join(terms)


def test_every_expression_of_the_grammar_fires_when_its_fields_say():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from graphpack.runtime.cron import parse_schedule, run_schedule
    from graphpack.triggers import check_cron

    @st.composite
    def expressions(draw):
        fields = [field_text(draw, i) for i in range(6)]
        with_seconds = draw(st.booleans())
        if not with_seconds:
            fields[0] = "0"
        text = " ".join(fields if with_seconds else fields[1:])
        return text, fields

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(expressions(), st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)))
    def check(expression, start):
        text, fields = expression
        start = start.replace(tzinfo=UTC)
        expected, t = [], start
        for _ in range(3):
            t = oracle_next(fields, t)
            if t is None:
                break
            expected.append(t)
        if not expected:  # never fires: the build says so
            with pytest.raises(GraphpackError, match="never fires"):
                check_cron(text)
            return
        assert check_cron(text) == text
        clock = FakeClock(start)
        fired = []
        stop = asyncio.Event()

        async def fire(due):
            fired.append(clock.now())
            if len(fired) == len(expected):
                stop.set()

        asyncio.run(run_schedule(parse_schedule(text), fire, stop, clock))
        assert fired == expected, text

    check()
