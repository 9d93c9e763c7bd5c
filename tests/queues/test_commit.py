"""Group commit (graphpack.queues.commit) on real file queues, and the consumer's side of the rule:
commit only after downstream writes are durable; a failing checkpoint backs off, no redelivery."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from graphpack.queues import Consumer, open_queue
from graphpack.queues.base import StorageError
from graphpack.queues.file import FileQueue


def test_concurrent_submits_share_one_write(tmp_path):
    queue = open_queue(str(tmp_path / "q"), linger=0.01)
    fsyncs = []
    real = FileQueue._append

    def counted(self, by_shard):
        fsyncs.append(sum(map(len, by_shard.values())))
        real(self, by_shard)

    FileQueue._append = counted  # type: ignore[method-assign]
    try:
        tickets = []

        def produce(start):
            for n in range(start, start + 100):
                tickets.append(queue.submit([{"n": n}]))

        threads = [threading.Thread(target=produce, args=(i * 100,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for ticket in tickets:
            ticket.wait(5)
    finally:
        FileQueue._append = real  # type: ignore[method-assign]
    assert sum(fsyncs) == 800
    assert len(fsyncs) <= 800 / 20, f"{len(fsyncs)} writes for 800 records"  # batched, not one per record
    items = queue.read(0, "g", max_records=1000)
    assert sorted(i.record()["n"] for i in items) == list(range(800))
    queue.close()


def test_full_batch_is_written_before_the_window_ends(tmp_path):
    queue = open_queue(str(tmp_path / "q"), linger=5.0, flush_records=10)
    first = queue.submit([{"n": n} for n in range(10)])  # full: written at once
    second = queue.submit([{"n": 10}])  # waits for the window (or a waiter)
    deadline = time.monotonic() + 2
    while not first.done() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.done() and first.error() is None
    assert not second.done()
    started = time.monotonic()
    second.wait()
    assert time.monotonic() - started < 1
    queue.close()


def test_a_failed_write_fails_every_ticket_of_its_batch_and_stores_nothing(tmp_path, monkeypatch):
    queue = open_queue(str(tmp_path / "q"), linger=0.05)
    queue.push([{"n": 0}])
    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if str(path).endswith(".seg") and "a" in mode:
            handle = real_open(path, mode, *args, **kwargs)
            handle.write(b"partial frame")  # a torn write, as a disk that fills up midway leaves

            class Full:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    handle.close()

                def write(self, data):
                    handle.flush()
                    raise OSError(errno.ENOSPC, "No space left on device")

            return Full()
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    tickets = [queue.submit([{"n": n}]) for n in range(1, 4)]
    for ticket in tickets:
        with pytest.raises(StorageError, match="No space left on device"):
            ticket.wait(5)
    monkeypatch.setattr("builtins.open", real_open)
    queue.push([{"n": 4}])
    items = open_queue(str(tmp_path / "q")).read(0, "g", max_records=10)
    assert [i.record()["n"] for i in items] == [0, 4]  # the failed batch was cut off again
    queue.close()


class Writes:
    """What a handler returns for the consumer to check before committing."""

    def __init__(self, error=None):
        self.error = error
        self.checked = False

    def check(self):
        self.checked = True
        if self.error is not None:
            raise self.error


def test_batch_is_committed_only_after_downstream_writes(tmp_path):
    queue = open_queue(str(tmp_path / "q"))
    queue.push([{"n": n} for n in range(5)])
    outcome = [StorageError("downstream disk full")]
    returned = []

    def handler(record, item):
        returned.append(Writes(outcome[0]))
        return returned[-1]

    consumer = Consumer(queue, "g", handler, batch_size=5, cleanup_interval=None)
    with pytest.raises(StorageError):
        consumer.run_once()
    assert queue.committed(0, "g") is None and len(returned) == 5 and returned[0].checked
    outcome[0] = None
    assert consumer.run_once() == 5  # delivered again from the checkpoint
    assert queue.committed(0, "g") == 4
    consumer.close()
    queue.close()


def test_failing_checkpoint_backs_off_and_does_not_redeliver(tmp_path, monkeypatch):
    queue = open_queue(str(tmp_path / "q"))
    queue.push([{"n": n} for n in range(3)])
    seen, attempts = [], []
    real_commit = FileQueue._commit
    broken = [True]

    def commit(self, shard, group, offset):
        attempts.append(time.monotonic())
        if broken[0]:
            raise StorageError("checkpoint: No space left on device")
        real_commit(self, shard, group, offset)

    monkeypatch.setattr(FileQueue, "_commit", commit)
    consumer = Consumer(queue, "g", lambda record, item: seen.append(record["n"]), poll_interval=0.01,
                        error_backoff=0.05, max_error_backoff=0.4)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(1.6)
        assert seen == [0, 1, 2]  # handled once: the failing commit is retried, the batch not redelivered
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        assert 3 <= len(attempts) <= 8, f"{len(attempts)} commit attempts in 1.6 s"  # 0.05, 0.1, 0.2, 0.4, 0.4..
        assert gaps[1] > 1.5 * gaps[0] * 0.9 and max(gaps) < 0.4 * 3  # exponential, capped (slack for load)
        broken[0] = False
        deadline = time.monotonic() + 5
        while queue.committed(0, "g") != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert queue.committed(0, "g") == 2 and seen == [0, 1, 2]
    queue.close()


def test_handler_storage_error_is_not_dead_lettered(tmp_path):
    queue = open_queue(str(tmp_path / "q"))
    queue.push([{"n": n} for n in range(3)])
    dead = []
    down = [True]

    def handler(record, item):
        if down[0] and record["n"] == 1:
            raise StorageError("downstream queue: cannot reach S3")
        return None

    consumer = Consumer(queue, "g", handler, batch_size=3, dead_letter=lambda item, exc: dead.append(item),
                        cleanup_interval=None)
    with pytest.raises(StorageError):
        consumer.run_once()
    assert dead == [] and queue.committed(0, "g") is None  # not the record's fault: kept, not dead-lettered
    down[0] = False
    assert consumer.run_once() == 3 and queue.committed(0, "g") == 2
    consumer.close()
    queue.close()
