"""Error stream records: step, error and original body reach the queue."""
from __future__ import annotations

from graphpack.queues import open_queue
from graphpack.queues.errorstream import close_error_streams, error_record, push_error
from tests.queues.test_contract import drain


def test_push_error_to_url_and_queue(queue_factory):
    q = queue_factory()
    push_error(q, "enrich", KeyError("price"), {"item": 3}, event_id="e7", function="enricher")
    [item] = drain(q, 0, "errors", 1)
    rec = item.record()
    assert rec["step"] == "enrich" and rec["error"] == "KeyError: 'price'"
    assert rec["body"] == {"item": 3} and rec["id"] == "e7" and rec["function"] == "enricher"
    assert rec["time"]


def test_push_error_by_url_reuses_the_queue(tmp_path):
    url = str(tmp_path / "errors")
    try:
        push_error(url, "a", "first", b"raw")
        push_error(url, "b", ValueError("second"), {"x": object()})
    finally:
        close_error_streams()
    q = open_queue(url)
    recs = [i.record() for i in drain(q, 0, "g", 2)]
    assert [r["step"] for r in recs] == ["a", "b"]
    assert recs[0]["body"] == "raw" and recs[0]["error"] == "first"
    assert recs[1]["body"].startswith("{'x': <object object")  # unserialisable body -> repr


def test_error_record_shape():
    rec = error_record("s", RuntimeError("x"), [1, 2])
    assert set(rec) == {"error", "step", "body", "id", "time"}
