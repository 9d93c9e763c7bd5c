"""The v3io client's wire format, and the fake's fidelity to the documented web API."""
from __future__ import annotations

import base64
import json

import httpx
import pytest

from graphpack.queues import open_queue
from graphpack.queues.consumer import Consumer
from tests.queues.v3io_fake import FakeV3io, evaluate, serve


@pytest.fixture
def fake_url():
    fake = FakeV3io()
    with serve(fake) as url:
        yield fake, url


def call(url: str, function: str, path: str, body: dict | None = None, method: str = "PUT") -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.request(method, url + path, headers={"X-v3io-function": function}, content=content)


def test_fake_stream_lifecycle_as_documented(fake_url):
    _, url = fake_url
    assert call(url, "CreateStream", "/bigdata/s1/", {"ShardCount": 2, "RetentionPeriodHours": 1}, "POST").status_code == 204
    again = call(url, "CreateStream", "/bigdata/s1", {"ShardCount": 2})
    assert again.status_code == 409 and again.json()["ErrorMessage"] == "ResourceInUseException"
    assert call(url, "DescribeStream", "/bigdata/s1").json() == {"ShardCount": 2, "RetentionPeriodHours": 1}
    # shards are created lazily: nothing to seek or get before the first record
    assert call(url, "Seek", "/bigdata/s1/0/", {"Type": "EARLIEST"}).status_code == 404
    assert call(url, "GetItem", "/bigdata/s1/0", {"AttributesToGet": "__last_sequence_num"}).status_code == 404
    put = call(url, "PutRecords", "/bigdata/s1", {"Records": [
        {"Data": base64.b64encode(b"a").decode(), "ShardId": 0},
        {"Data": base64.b64encode(b"b").decode(), "ShardId": 5},
        {"Data": base64.b64encode(b"c").decode(), "ShardId": 0, "ClientInfo": base64.b64encode(b"i").decode()},
    ]}, "POST")
    assert put.status_code == 200
    body = put.json()
    assert body["FailedRecordCount"] == 1
    assert body["Records"][0] == {"SequenceNumber": 1, "ShardId": 0}
    assert body["Records"][1]["ErrorMessage"] == "ShardIDOutOfRangeException"
    assert body["Records"][2] == {"SequenceNumber": 2, "ShardId": 0}
    loc = call(url, "SeekShard", "//bigdata/s1/0/", {"Type": "EARLIEST"}).json()["Location"]
    got = call(url, "GetRecords", "/bigdata/s1/0", {"Location": loc, "Limit": 0}).json()
    assert [base64.b64decode(r["Data"]) for r in got["Records"]] == [b"a", b"c"]
    assert got["Records"][1]["ClientInfo"] == base64.b64encode(b"i").decode()
    assert got["RecordsBehindLatest"] == 0
    # "last + 1" SEQUENCE seek works and stays valid as records are appended
    end = call(url, "Seek", "/bigdata/s1/0", {"Type": "SEQUENCE", "StartingSequenceNumber": 3}).json()["Location"]
    empty = call(url, "GetRecords", "/bigdata/s1/0", {"Location": end}).json()
    assert empty["Records"] == [] and empty["NextLocation"] == end
    call(url, "PutRecords", "/bigdata/s1", {"Records": [{"Data": base64.b64encode(b"d").decode(), "ShardId": 0}]})
    assert [r["SequenceNumber"] for r in call(url, "GetRecords", "/bigdata/s1/0", {"Location": end}).json()["Records"]] == [3]
    bad = call(url, "GetRecords", "/bigdata/s1/0", {"Location": base64.b64encode(b"junk").decode()})
    assert bad.status_code == 400 and "IllegalLocationException" in bad.text
    assert call(url, "Seek", "/bigdata/s1/7", {"Type": "LATEST"}).json()["ErrorMessage"] == "ShardIDOutOfRangeException"
    assert httpx.head(url + "/bigdata/s1").status_code == 200
    assert httpx.delete(url + "/bigdata/s1").status_code == 204
    assert httpx.head(url + "/bigdata/s1").status_code == 404


def test_fake_kv_conditions_and_verifier(fake_url):
    _, url = fake_url
    first = call(url, "PutItem", "/bigdata/s/cg-state.json", {
        "UpdateMode": "CreateOrReplaceAttributes", "Item": {"state": {"S": "{}"}},
        "ConditionExpression": "not(exists(state))"})
    assert first.status_code == 200
    verifier = first.headers["X-v3io-transaction-verifier"]
    assert verifier.startswith("__mtime_secs==") and "__mtime_nsecs==" in verifier
    refused = call(url, "PutItem", "/bigdata/s/cg-state.json", {
        "Item": {"state": {"S": "x"}}, "ConditionExpression": "not(exists(state))"})
    assert refused.status_code == 400 and "16777244" in refused.text
    item = call(url, "GetItem", "/bigdata/s/cg-state.json",
                {"AttributesToGet": "__mtime_nsecs,__mtime_secs,state"}).json()["Item"]
    assert isinstance(item["__mtime_secs"]["N"], str)  # N values are strings (v3io-go needs that)
    cond = f"(__mtime_nsecs == {item['__mtime_nsecs']['N']}) AND (__mtime_secs == {item['__mtime_secs']['N']})"
    ok = call(url, "PutItem", "/bigdata/s/cg-state.json", {
        "UpdateMode": "CreateOrReplaceAttributes", "Item": {"state": {"S": "y"}}, "ConditionExpression": cond})
    assert ok.status_code == 200
    stale = call(url, "PutItem", "/bigdata/s/cg-state.json", {"Item": {"state": {"S": "z"}}, "ConditionExpression": cond})
    assert stale.status_code == 400


def test_condition_evaluator():
    attrs = {"a": 1, "__obj_type": 3, "s": "x"}
    assert evaluate("__obj_type == 3", attrs)
    assert evaluate("(a == 1) AND (s == 'x')", attrs)
    assert not evaluate("not(exists(a))", attrs)
    assert evaluate("not(exists(b)) AND exists(a)", attrs)
    assert not evaluate("a == 2", attrs)


def test_checkpoints_and_state_use_nuclio_format(fake_url):
    _, url = fake_url
    q = open_queue("v3io://bigdata/streams/orders", shards=2, endpoint=url, access_key="k")
    q.check()
    q.push([{"n": n} for n in range(6)])
    done = []
    consumer = Consumer(q, "child_fn", lambda rec, item: done.append(item.offset), owner="child-1")
    while len(done) < 6:
        consumer.run_once()
    for shard in (0, 1):
        attr = "__child_fn_committed_sequence_number"
        item = call(url, "GetItem", f"/bigdata/streams/orders/{shard}", {"AttributesToGet": attr}).json()["Item"]
        assert item[attr] == {"N": "3"}  # last processed sequence number, 3 records per shard
    raw = call(url, "GetItem", "/bigdata/streams/orders/child_fn-state.json", {"AttributesToGet": "state"})
    state = json.loads(raw.json()["Item"]["state"]["S"])
    assert state["schema_version"] == "0.0.1"
    [session] = state["session_states"]
    assert session["member_id"] == "child-1" and session["shards"] == [0, 1]
    assert session["last_heartbeat_time"].endswith("Z")
    consumer.close()
    q.close()


def test_client_retries_overload_and_sends_session_key(fake_url):
    fake, url = fake_url
    fake.access_key = "secret"
    q = open_queue("v3io://bigdata/retry", endpoint=url, access_key="secret")
    q.check()
    fake.fail_next = 2  # two 503s, then success
    q.push([{"n": 1}])
    assert [i.record() for i in q.read(0, "g", timeout=1)] == [{"n": 1}]
    q.close()


def test_reads_before_first_record_and_illegal_location_recovery(fake_url):
    fake, url = fake_url
    q = open_queue("v3io://bigdata/lazy", endpoint=url, shards=2, poll_interval=0.01)
    q.check()
    assert q.read(1, "g", timeout=0.05) == []  # shard 1 does not exist yet
    q.push([{"full_event_wrapper": True, "body": 1, "id": "1", "key": "a"}])
    shard = next(s for s in (0, 1) if fake.streams[("bigdata", "lazy")].shards[s].exists)
    assert len(q.read(shard, "g", timeout=1)) == 1
    q._cursors[("g", shard)] = base64.b64encode(b"x" * 16).decode()  # a location the server rejects
    assert q.read(shard, "g") == []
    assert [i.record()["body"] for i in q.read(shard, "g")] == [1]  # re-seeked from the checkpoint
    q.close()


def test_nuclio_trigger_points_at_the_same_stream(monkeypatch):
    monkeypatch.delenv("V3IO_API", raising=False)
    q = open_queue("v3io://users/pipelines/p1/q1", shards=4, access_key="secret-key")
    trigger = q.nuclio_trigger("enricher")
    assert trigger == {
        "kind": "v3ioStream",
        "url": "http://v3io-webapi:8081",
        "password": "$generate",
        "attributes": {"containerName": "users", "streamPath": "pipelines/p1/q1", "consumerGroup": "enricher",
                       "seekTo": "earliest", "readBatchSize": 64},
    }
    assert "secret-key" not in json.dumps(trigger)
    with pytest.raises(Exception, match="seekTo"):
        q.nuclio_trigger("g", seek_to="middle")
