"""observe/errors.py: the recent records of an error stream, read without changing the stream."""
from __future__ import annotations

from pathlib import Path

from graphpack.observe.errors import ErrorLog
from graphpack.queues import open_queue, push_error
from graphpack.queues.file import FileQueue


def test_file_stream_records_by_step_newest_first_and_nothing_written(tmp_path: Path) -> None:
    url = str(tmp_path / "errors")
    log = ErrorLog(url, keep=3)
    assert log.poll() == 0 and log.error == ""  # no error yet: the stream does not exist
    assert not (tmp_path / "errors").exists()
    for i in range(5):
        push_error(url, "audit", ValueError(f"bad {i}"), {"n": i}, event_id=f"e{i}")
    push_error(url, "router.iris", KeyError("x"), {"n": 9})
    assert log.poll() == 6
    assert [r["error"] for r in log.recent("audit")] == ["ValueError: bad 4", "ValueError: bad 3", "ValueError: bad 2"]
    assert [r["body"] for r in log.recent("router")] == [{"n": 9}]  # a router shows its routes' errors
    assert log.recent("enrich") == []
    assert {step: len(records) for step, records in log.by_step.items()} == {"audit": 3, "router.iris": 1}  # keep=3
    push_error(url, "audit", ValueError("bad 5"), {"n": 5})
    assert log.poll() == 1 and log.recent("audit")[0]["body"] == {"n": 5}
    assert not (tmp_path / "errors" / "groups").exists() or not any((tmp_path / "errors" / "groups").iterdir())


def test_file_stream_read_across_segments_and_after_cleanup(tmp_path: Path) -> None:
    url = str(tmp_path / "errors")
    queue = FileQueue(url, segment_bytes=120)
    for i in range(10):  # a segment takes whole batches: one record each, a new segment every few
        queue.push([{"step": "a", "error": f"E{i}", "time": f"{i:04d}"}])
    assert len(list((tmp_path / "errors" / "shards" / "0").glob("*.seg"))) > 2
    log = ErrorLog(url)
    log.poll()
    first = {r["error"] for r in log.recent("a")}
    assert first and "E9" in first and "E0" not in first  # only the newest segment at the start
    for i in range(10, 40):
        queue.push([{"step": "a", "error": f"E{i}", "time": f"{i:04d}"}])
    for _ in range(20):  # a poll reads on to the next segment when it finishes one
        log.poll()
    assert {f"E{i}" for i in range(10, 40)} <= {r["error"] for r in log.recent("a")}
    queue.close()


def test_a_consumer_of_the_stream_still_cleans_up_behind_a_reader(tmp_path: Path) -> None:
    """The reader holds no checkpoint: what the stream's own consumer committed goes."""
    url = str(tmp_path / "errors")
    queue = FileQueue(url, segment_bytes=200)
    for i in range(20):
        queue.push([{"step": "a", "error": f"E{i}", "time": f"{i:04d}"}])
    log = ErrorLog(url)
    log.poll()
    items = queue.read(0, "handler", 100)
    queue.commit(0, "handler", items[-1].offset)
    log_cursor = dict(log._reader.cursors)  # type: ignore[union-attr]
    assert queue.cleanup() > 0
    assert sorted(p.name for p in (tmp_path / "errors" / "groups").iterdir()) == ["handler"]
    for i in range(20, 23):
        queue.push([{"step": "a", "error": f"E{i}", "time": f"{i:04d}"}])
    for _ in range(5):
        log.poll()
    assert log.error == "" and log.recent("a")[0]["error"] == "E22" and log_cursor
    queue.close()


def test_other_backends_are_read_as_a_group_that_never_commits(s3_bucket: str, s3_env: str) -> None:
    url = f"s3://{s3_bucket}/errors"
    push_error(url, "audit", RuntimeError("boom"), {"n": 1})
    log = ErrorLog(url)
    assert log.poll() == 1 and log.recent("audit")[0]["error"] == "RuntimeError: boom"
    queue = open_queue(url)
    assert queue.committed(0, log._reader.group) is None  # type: ignore[union-attr]
    queue.close()
    log.close()


def test_an_unreadable_stream_is_an_error_not_an_exception(tmp_path: Path) -> None:
    url = str(tmp_path / "errors")
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "meta.json").write_text("{not json")
    log = ErrorLog(url)
    assert log.poll() == 0 and "cannot read the error stream" in log.error
