"""W3C traceparent parsing and the ids graphpack makes."""
import re

from graphpack.runtime import tracing
from graphpack.runtime.event import Event

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_traceparents_are_kept_and_bad_ones_refused():
    assert tracing.valid(GOOD) == GOOD
    assert tracing.valid(GOOD.replace("-01", "-00")) == GOOD.replace("-01", "-00")  # not sampled: still a trace
    for bad in (GOOD.upper(), "ff" + GOOD[2:], "00-" + "0" * 32 + GOOD[35:], GOOD[:36] + "0" * 16 + "-01",
                GOOD + "-extra", GOOD[:-1], "00-xyz", "", None, 42, b"00-" + GOOD[3:].encode()):
        assert tracing.valid(bad) is None, bad
    # a later version may add fields: its first four are read
    assert tracing.valid("01" + GOOD[2:] + "-what-comes-next") == "01" + GOOD[2:]


def test_new_traceparents_are_valid_unique_and_events_keep_theirs():
    made = {tracing.new_traceparent() for _ in range(1000)}
    assert len(made) == 1000 and all(tracing.valid(t) for t in made)
    assert len({tracing.trace_id(t) for t in made}) == 1000
    event = Event({"a": 1})
    assert "traceparent" not in event.__dict__  # made on first use only
    first = event.traceparent
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first) and event.traceparent == first
    branch = Event({"b": 2})
    copy = branch.copy()
    assert copy.traceparent == branch.traceparent  # fan-out branches share the trace


def test_log_lines_name_the_running_events_trace(caplog):
    from graphpack.runtime.logger import Logger

    logger = Logger("graphpack.test-trace")
    logger._log.propagate = True
    event = Event({}, traceparent=GOOD)
    token = tracing.current_event.set(event)
    try:
        logger.info("inside", step="s1")
    finally:
        tracing.current_event.reset(token)
    logger.info("outside")
    inside, outside = [r.getMessage() for r in caplog.records if r.name == "graphpack.test-trace"]
    assert '"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"' in inside and '"step": "s1"' in inside
    assert "trace_id" not in outside
