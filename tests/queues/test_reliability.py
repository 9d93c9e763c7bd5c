"""Root -> child through file, S3, v3io and Kafka queues while the child is killed with SIGKILL
(and, for Kafka, the broker once too).

10,000 events; the child (a separate process running the Consumer) is killed several times while it
works and restarted: every event is processed, none lost, and duplicates stay within one batch per
kill. Two child processes in one group split the shards without overlap.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from graphpack.queues import StorageError, check_queue_url, open_queue
from graphpack.queues import record as wire
from graphpack.runtime.event import Event

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 10_000
BATCH = 50
KILLS = 4


def _spawn(url: str, out: Path, owner: str, options: dict) -> subprocess.Popen:
    with open(_log(out), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.queues.child_worker", url, "child", str(out), owner, json.dumps(options)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        _reap(proc)
        raise AssertionError(f"child did not start: {line} {_log(out).read_text()[-2000:]}")
    return proc


def _log(out: Path) -> Path:
    return out.with_suffix(".log")


def _reap(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def _lines(out: Path) -> list[tuple[str, int, int]]:
    if not out.exists():
        return []
    rows = []
    for line in out.read_text().splitlines():
        owner, shard, n = line.split()
        rows.append((owner, int(shard), int(n)))
    return rows


def _produce(url: str, options: dict, errors: list, retries: list | None = None) -> threading.Thread:
    producer_options = {k: v for k, v in options.items() if k not in ("delay", "batch_size", "lease_ttl")}

    def run() -> None:
        try:
            queue = open_queue(url, **producer_options)
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
            return
        try:
            for start in range(0, EVENTS, 100):
                events = []
                for n in range(start, start + 100):
                    ev = Event(body={"n": n}, id=str(n))
                    ev.key = f"k{n % 97}"
                    events.append(wire.wrap(ev))
                while True:
                    try:
                        queue.push(events)
                        break
                    except StorageError:  # answered 503 while the store restarts: the client sends again
                        if retries is None:
                            raise
                        retries.append(len(events))
                        time.sleep(0.5)
                time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            queue.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def check_soak(url: str, out: Path, options: dict, broker: Any = None) -> None:
    """With ``broker`` (a Kafka broker), the broker is also SIGKILLed once, after the second kill of
    the child, and restarted; pushes refused meanwhile are sent again, as a client would after a 503."""
    shards = 2
    options = {**options, "shards": shards, "batch_size": BATCH, "delay": 0.0003}
    check_queue_url(url, **{k: v for k, v in options.items() if k not in ("delay", "batch_size", "lease_ttl")})
    errors: list = []
    retries: list = []
    producer = _produce(url, options, errors, retries if broker is not None else None)
    kills = 0
    broker_kills = 0
    restart_s = 0.0
    proc = _spawn(url, out, "child-0", options)
    try:
        while kills < KILLS:
            before = len(_lines(out))
            deadline = time.monotonic() + 30
            while len(_lines(out)) < before + 300 and time.monotonic() < deadline:
                assert not errors, errors
                time.sleep(0.02)
            assert proc.poll() is None, _log(out).read_text()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)
            _reap(proc)
            kills += 1
            if broker is not None and kills == 2:
                broker.kill()
                broker_kills += 1
                restart_s = broker.start()
            # the restarted pod comes back under a new member id half of the time: the dead
            # member's leases and heartbeat must expire before its shards move on
            proc = _spawn(url, out, f"child-{kills % 2}", options)
        producer.join(60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len({n for _, _, n in _lines(out)}) < EVENTS:
            assert proc.poll() is None, _log(out).read_text()[-2000:]
            time.sleep(0.05)
    finally:
        _reap(proc)
        producer.join(60)
    assert not errors, errors
    rows = _lines(out)
    counts = Counter(n for _, _, n in rows)
    missing = set(range(EVENTS)) - set(counts)
    assert not missing, f"lost {len(missing)} events, e.g. {sorted(missing)[:10]}"
    duplicates = len(rows) - EVENTS
    bound = (kills + broker_kills) * BATCH + sum(retries)
    print(f"{url}: {EVENTS} events, {kills} child kills, {broker_kills} broker kills (restart {restart_s:.1f} s), "
          f"{sum(retries)} records pushed again, {duplicates} duplicates (bound {bound})")
    assert kills == KILLS
    assert duplicates <= bound, f"{duplicates} duplicates for {kills} kills of batch {BATCH}"
    for shard in range(shards):  # per-shard order within each life of the child
        ns = [n for _, s, n in rows if s == shard]
        firsts = {}
        for i, n in enumerate(ns):
            firsts.setdefault(n, i)
        assert [n for n in sorted(firsts, key=firsts.get)] == sorted(firsts)


def test_file_queue_survives_kill_9(tmp_path):
    check_soak(str(tmp_path / "q"), tmp_path / "out.txt", {"lease_ttl": 2.0})


def test_s3_queue_survives_kill_9(tmp_path, s3_server, s3_bucket):
    check_soak(f"s3://{s3_bucket}/queues/q", tmp_path / "out.txt",
          {"endpoint_url": s3_server, "linger": 0.05, "poll_interval": 0.02, "lease_ttl": 2.0})


def test_v3io_queue_survives_kill_9(tmp_path, v3io_server):
    check_soak("v3io://bigdata/queues/q", tmp_path / "out.txt",
          {"endpoint": v3io_server, "access_key": "k", "poll_interval": 0.02, "lease_ttl": 2.0})


def test_kafka_queue_survives_kill_9_of_child_and_broker(tmp_path, kafka_broker):
    check_soak(f"kafka://{kafka_broker.bootstrap}/crash-{time.monotonic_ns()}", tmp_path / "out.txt",
               {"poll_interval": 0.02, "lease_ttl": 2.0}, broker=kafka_broker)


def check_split(url: str, out: Path, options: dict) -> None:
    shards = 4
    options = {**options, "shards": shards, "batch_size": 20, "lease_ttl": 2.0}
    plain = {k: v for k, v in options.items() if k not in ("batch_size", "lease_ttl")}
    check_queue_url(url, **plain)
    procs = [_spawn(url, out, f"member-{i}", options) for i in range(2)]
    try:
        time.sleep(3.0)  # two heartbeats: both members see each other and settle their shards
        queue = open_queue(url, **plain)
        queue.push([{"full_event_wrapper": True, "body": {"n": n}, "id": str(n), "key": f"k{n}"}
                    for n in range(2000)])
        queue.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_lines(out)) < 2000:
            time.sleep(0.05)
    finally:
        for proc in procs:
            _reap(proc)
    rows = _lines(out)
    assert sorted(n for _, _, n in rows) == list(range(2000))  # none lost, none twice
    owners: dict[int, set[str]] = {}
    for owner, shard, _ in rows:
        owners.setdefault(shard, set()).add(owner)
    assert set(owners) == set(range(shards))
    assert all(len(o) == 1 for o in owners.values()), owners
    assert {next(iter(o)) for o in owners.values()} == {"member-0", "member-1"}


def test_two_processes_split_file_queue(tmp_path):
    check_split(str(tmp_path / "q"), tmp_path / "out.txt", {})


def test_two_processes_split_s3_queue(tmp_path, s3_server, s3_bucket):
    check_split(f"s3://{s3_bucket}/queues/q", tmp_path / "out.txt", {"endpoint_url": s3_server, "linger": 0.02,
                                                                 "poll_interval": 0.02})
