"""File-queue specifics: torn frames from a producer killed mid-write, segment rolling, layout."""
from __future__ import annotations

import json

from graphpack.queues import open_queue
from graphpack.queues.file import FRAME
from tests.queues.test_contract import drain


def test_torn_tail_is_invisible_then_truncated(tmp_path):
    q = open_queue(str(tmp_path / "q"))
    q.push([{"n": 0}, {"n": 1}])
    [segment] = sorted((tmp_path / "q" / "shards" / "0").glob("*.seg"))
    with open(segment, "ab") as f:  # a producer died after writing half a frame
        f.write(FRAME.pack(2, 100, 0) + b"partial")
    reader = open_queue(str(tmp_path / "q"))
    assert [i.record()["n"] for i in drain(reader, 0, "g", 3, timeout=0.3)] == [0, 1]
    producer = open_queue(str(tmp_path / "q"))  # a new producer truncates the torn frame and goes on
    producer.push([{"n": 2}])
    items = drain(reader, 0, "g", 1)
    assert [(i.offset, i.record()["n"]) for i in items] == [(2, 2)]


def test_segments_roll_and_reads_cross_them(tmp_path):
    q = open_queue(str(tmp_path / "q"), segment_bytes=200)
    for n in range(30):
        q.push([{"n": n, "pad": "x" * 20}])
    segments = sorted((tmp_path / "q" / "shards" / "0").glob("*.seg"))
    assert len(segments) > 3
    assert [int(s.stem) for s in segments] == sorted(int(s.stem) for s in segments)
    items = drain(open_queue(str(tmp_path / "q")), 0, "g", 30, max_records=7)
    assert [i.record()["n"] for i in items] == list(range(30))
    assert [i.offset for i in items] == list(range(30))


def test_layout_and_checkpoint_files(tmp_path):
    q = open_queue(f"file://{tmp_path}/q", shards=2, fsync=False)
    q.check()
    assert json.loads((tmp_path / "q" / "meta.json").read_text()) == {"shards": 2}
    q.push([{"n": 1}])
    q.commit(0, "child", 7)
    assert json.loads((tmp_path / "q" / "groups" / "child" / "0.ckpt").read_text()) == {"offset": 7}
    assert not list((tmp_path / "q" / "groups" / "child").glob(".*.tmp"))  # no temp files left behind
