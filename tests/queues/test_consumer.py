"""The consumer loop on every backend: at-least-once, dead letters, shard split between members."""
from __future__ import annotations

import itertools
import threading
import time

import pytest

from graphpack.queues import open_queue
from graphpack.queues.consumer import Consumer
from tests.queues.test_contract import drain


def run_until(consumer: Consumer, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        if consumer.run_once() == 0:
            time.sleep(0.01)


def test_processes_everything_and_commits_per_batch(queue_factory):
    q = queue_factory(shards=2)
    q.push([{"n": n} for n in range(50)])
    q.flush()
    seen = []
    consumer = Consumer(q, "child", lambda rec, item: seen.append((item.shard, rec["n"])), batch_size=8)
    run_until(consumer, lambda: len(seen) == 50)
    assert sorted(n for _, n in seen) == list(range(50))
    for shard in (0, 1):
        ns = [n for s, n in seen if s == shard]
        assert ns == sorted(ns)  # per-shard order
    assert q.committed(0, "child") is not None and q.committed(1, "child") is not None
    consumer.close()
    again = Consumer(queue_factory(shards=2), "child", lambda rec, item: seen.append(rec), batch_size=8)
    assert again.run_once() == 0  # all committed: nothing redelivered


def test_crash_before_commit_redelivers_the_batch(queue_factory):
    q = queue_factory()
    q.push([{"n": n} for n in range(10)])
    q.flush()
    seen = []

    def crash_on_7(rec, item):
        if rec["n"] == 7:
            raise SystemExit("killed")  # not an Exception: no retry, no commit, like a crash
        seen.append(rec["n"])

    first = Consumer(q, "child", crash_on_7, batch_size=5)
    with pytest.raises(SystemExit):
        run_until(first, lambda: False, timeout=5)
    assert seen == [0, 1, 2, 3, 4, 5, 6]
    q.close()  # a dead process holds no file locks
    second = Consumer(queue_factory(), "child", lambda rec, item: seen.append(rec["n"]), batch_size=5,
                      owner=first.owner)
    run_until(second, lambda: seen[-1:] == [9])
    assert seen == [0, 1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9]  # one batch redelivered at most


def test_poison_item_goes_to_dead_letter_and_shard_keeps_flowing(queue_factory):
    q = queue_factory()
    q.push([{"n": n} for n in range(6)])
    q.flush()
    seen, errors = [], []

    def handler(rec, item):
        if rec["n"] == 2:
            raise ValueError("poison")
        seen.append(rec["n"])

    consumer = Consumer(q, "child", handler, max_attempts=3,
                        on_error=lambda item, exc, attempt: errors.append((item.offset, attempt)))
    run_until(consumer, lambda: len(seen) == 5)
    assert seen == [0, 1, 3, 4, 5]
    assert [a for _, a in errors] == [1, 2, 3] and consumer.dead_lettered == 1
    dlq = open_queue(q.dead_letter_url, **queue_factory.options)
    try:
        [dead] = drain(dlq, 0, "inspect", 1)
    finally:
        dlq.close()
    assert dead.record()["record"] == {"n": 2} and "ValueError: poison" in dead.record()["error"]
    assert consumer.run_once() == 0  # committed past the poison item


def test_dead_letter_callable(queue_factory):
    q = queue_factory()
    q.push([{"n": 1}])
    q.flush()
    dead = []

    def boom(rec, item):
        raise RuntimeError("always")

    consumer = Consumer(q, "child", boom, max_attempts=2, dead_letter=lambda item, exc: dead.append(str(exc)))
    run_until(consumer, lambda: dead)
    assert dead == ["always"]


def test_two_consumers_split_shards_without_overlap(queue_factory):
    shards = 4
    producer = queue_factory(shards=shards)
    owners: dict[int, set[str]] = {s: set() for s in range(shards)}
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def make(name: str) -> Consumer:
        def handler(rec, item):
            with lock:
                owners[item.shard].add(name)
                seen.append((name, rec["n"]))
        return Consumer(queue_factory(shards=shards), "child", handler, owner=name, lease_ttl=3.0, batch_size=10)

    a, b = make("a"), make("b")
    a.rebalance(force=True)
    b.rebalance(force=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (len(a.owned) == 2 and len(b.owned) == 2):
        a.rebalance(force=True)
        b.rebalance(force=True)
    assert a.owned.isdisjoint(b.owned) and a.owned | b.owned == set(range(shards))
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in (a, b)]
    for t in threads:
        t.start()
    try:
        for start in range(0, 400, 40):
            producer.push([{"n": n} for n in range(start, start + 40)])
        producer.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 400:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert sorted(n for _, n in seen) == list(range(400))  # nothing lost, nothing twice
    assert all(len(names) == 1 for names in owners.values())
    assert {next(iter(n)) for n in owners.values()} == {"a", "b"}


def test_fixed_shards(queue_factory):
    q = queue_factory(shards=2)
    q.push([{"n": n} for n in range(20)])
    q.flush()
    seen = []
    consumer = Consumer(q, "child", lambda rec, item: seen.append(item.shard), shards=[1])
    run_until(consumer, lambda: bool(seen))  # a broker may take seconds to hand out the first record
    run_until(consumer, lambda: False, timeout=0.5)
    assert seen and set(seen) == {1}


def test_owner_of_shard_0_runs_cleanup(queue_factory):
    q = queue_factory(shards=2)
    calls = []
    real = q.cleanup
    q.cleanup = lambda: calls.append(1) or real()  # type: ignore[method-assign]
    q.push([{"n": n} for n in range(10)])
    q.flush()
    consumer = Consumer(q, "child", lambda rec, item: None, cleanup_interval=0.05)
    run_until(consumer, lambda: len(calls) >= 2, timeout=5)
    assert len(calls) >= 2
    fixed = Consumer(queue_factory(shards=2), "other", lambda rec, item: None, shards=[1], cleanup_interval=0.01)
    fixed.queue.cleanup = lambda: calls.append(2)  # type: ignore[method-assign]
    run_until(fixed, lambda: False, timeout=0.3)
    assert 2 not in calls  # only the owner of shard 0 cleans up


def test_idle_polling_backs_off(tmp_path):
    calls = []
    q = open_queue(str(tmp_path / "q"))
    real = q.read
    q.read = lambda *a, **k: calls.append(time.monotonic()) or real(*a, **k)  # type: ignore[method-assign]
    consumer = Consumer(q, "g", lambda rec, item: None, poll_interval=0.01, max_poll_interval=0.16)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    time.sleep(1.0)
    q.push([{"n": 1}])
    time.sleep(0.3)
    stop.set()
    thread.join(5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert max(gaps) < 0.3 and max(gaps) >= 0.15  # capped at max_poll_interval
    assert len(calls) < 20  # 1 s idle at 10 ms without backoff would be ~100 polls
    assert consumer.processed == 1
    q.close()


def test_failed_dead_letter_push_redelivers_the_rest_of_the_batch(queue_factory):
    q = queue_factory()
    q.push([{"n": n} for n in range(6)])
    q.flush()
    seen = []
    broken = [True]

    def dead_letter(item, exc):
        if broken[0]:
            broken[0] = False
            raise ConnectionError("dead-letter queue unreachable")

    def handler(rec, item):
        if rec["n"] == 2:
            raise ValueError("poison")
        seen.append(rec["n"])

    consumer = Consumer(q, "child", handler, max_attempts=1, dead_letter=dead_letter,
                        poll_interval=0.01, max_poll_interval=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and seen[-1:] != [5]:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert consumer.errors == 1
    assert seen == [0, 1, 0, 1, 3, 4, 5]  # the batch came again from the checkpoint; nothing skipped
