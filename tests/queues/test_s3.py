"""S3-queue specifics on the moto server: batching, conditional writes, fencing, lease expiry."""
from __future__ import annotations

import time

import pytest

from graphpack.queues import LeaseLost, open_queue
from graphpack.queues.base import StorageError
from tests.plugins.s3 import free_port
from tests.queues.test_contract import drain


@pytest.fixture
def url(s3_bucket):
    return f"s3://{s3_bucket}/queues/q1"


def test_submits_are_batched_into_segment_objects(url, s3_server, s3_client, s3_bucket):
    q = open_queue(url, endpoint_url=s3_server, linger=0.5, flush_records=400)
    q.check()
    before = q.requests
    tickets = [q.submit([{"n": n} for n in range(start, start + 50)]) for start in range(0, 1000, 50)]
    assert not tickets[-1].done()  # the last 200 wait for the window
    q.flush()
    assert all(t.done() and t.error() is None for t in tickets)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="queues/q1/shards/")["Contents"]]
    assert keys == [f"queues/q1/shards/0/{i:012d}.seg" for i in range(3)]  # 400 + 400 + 200
    assert q.requests - before <= 4  # 3 PUTs (+ 1 LIST to find the first segment number)
    items = drain(open_queue(url, endpoint_url=s3_server), 0, "g", 1000, max_records=1000)
    assert [i.record()["n"] for i in items] == list(range(1000))
    q.close()


def test_linger_flushes_in_the_background(url, s3_server):
    q = open_queue(url, endpoint_url=s3_server, linger=0.05)
    q.push([{"n": 1}])
    reader = open_queue(url, endpoint_url=s3_server, poll_interval=0.01)
    assert [i.record() for i in reader.read(0, "g", timeout=5)] == [{"n": 1}]
    q.close()


def test_stale_consumer_cannot_move_the_checkpoint(url, s3_server):
    producer = open_queue(url, endpoint_url=s3_server, linger=0)
    producer.push([{"n": n} for n in range(4)])
    a = open_queue(url, endpoint_url=s3_server)
    b = open_queue(url, endpoint_url=s3_server)
    items_a = drain(a, 0, "g", 4)
    items_b = drain(b, 0, "g", 4)
    b.commit(0, "g", items_b[-1].offset)
    with pytest.raises(LeaseLost):
        a.commit(0, "g", items_a[1].offset)  # a's view of the checkpoint is stale: refused
    assert a.committed(0, "g") == items_b[-1].offset


def test_lease_expires_and_the_old_owner_cannot_renew(url, s3_server):
    a = open_queue(url, endpoint_url=s3_server)
    b = open_queue(url, endpoint_url=s3_server)
    assert a.acquire(0, "g", "a", ttl=3.0)  # long enough for b's try to land inside it on a busy machine
    held_until = time.monotonic() + 3.0
    assert not b.acquire(0, "g", "b", ttl=1.0)
    time.sleep(max(0.0, held_until - time.monotonic()) + 0.1)
    assert b.acquire(0, "g", "b", ttl=30)
    assert not a.acquire(0, "g", "a", ttl=1.0)  # its conditional renewal fails: b wrote the lease


def test_unreachable_endpoint_fails_the_push_and_names_the_endpoint(url):
    endpoint = f"http://127.0.0.1:{free_port()}"
    q = open_queue(url, endpoint_url=endpoint, linger=10)
    ticket = q.submit([{"n": 1}, {"n": 2}])
    with pytest.raises(StorageError, match=f"cannot reach S3 at {endpoint}"):
        ticket.wait()  # waiting ends the window at once
    assert isinstance(ticket.error(), StorageError)
    with pytest.raises(StorageError):
        q.push([{"n": 3}])
    q.close()


def test_errors_name_the_endpoint_from_the_environment(url, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    q = open_queue(url)  # no endpoint_url=: boto3 takes it from the environment
    with pytest.raises(StorageError, match=f"cannot reach S3 at {endpoint}") as err:
        q.push([{"n": 1}])
    assert "default AWS endpoint" not in str(err.value)
    q.close()
