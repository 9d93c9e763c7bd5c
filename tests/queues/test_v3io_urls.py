"""v3io URLs as MLRun writes them (issue 16): v3io:///<container>/<path> with V3IO_API,
v3io://<host:port>/<container>/<path>, v3ios:// for https, and graphpack's short form; for queues,
the error stream and the v3ioStream triggers written to function.yaml."""
from __future__ import annotations

import pytest

import graphpack
from graphpack.errors import GraphpackError
from graphpack.queues import QueueError, open_queue
from graphpack.queues.errorstream import close_error_streams
from graphpack.queues.v3io import parse_v3io_url
from graphpack.triggers import V3IOStreamTrigger
from tests.queues.test_contract import drain


@pytest.mark.parametrize("url, parsed", [
    ("v3io:///projects/shop/q1", (None, "projects", "shop/q1")),
    ("v3io://127.0.0.1:8081/projects/shop/q1", ("http://127.0.0.1:8081", "projects", "shop/q1")),
    ("v3io://webapi.example.com/users/a/b/", ("http://webapi.example.com", "users", "a/b")),
    ("v3ios://webapi.example.com:8443/users/q", ("https://webapi.example.com:8443", "users", "q")),
    ("v3io://localhost/users/q", ("http://localhost", "users", "q")),
    ("v3io://bigdata/queues/q", (None, "bigdata", "queues/q")),  # graphpack's short form: a container
])
def test_url_forms(url: str, parsed: tuple) -> None:
    assert parse_v3io_url(url) == parsed


def test_not_a_v3io_url() -> None:
    with pytest.raises(QueueError, match="not a v3io URL"):
        parse_v3io_url("s3://bucket/q")
    with pytest.raises(QueueError, match="use v3io:///<container>/<stream path>"):
        open_queue("v3io:///projects")


def test_queue_endpoint_from_v3io_api_or_the_url(v3io_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V3IO_API", v3io_server)
    q = open_queue("v3io:///projects/shop/from-env", shards=1, access_key="k", poll_interval=0.01)
    q.check()
    q.push([{"n": 1}])
    assert [i.record() for i in drain(q, 0, "g", 1)] == [{"n": 1}]
    q.close()
    monkeypatch.delenv("V3IO_API")
    host = v3io_server.split("://", 1)[1]
    q = open_queue(f"v3io://{host}/projects/shop/from-env", access_key="k", poll_interval=0.01)
    assert q.endpoint == v3io_server and (q.container, q.path) == ("projects", "shop/from-env")
    assert [i.record() for i in drain(q, 0, "g2", 1)] == [{"n": 1}]  # the same stream
    q.close()
    assert open_queue(f"v3ios://{host}/projects/x").endpoint == f"https://{host}"


def test_error_stream_in_mlruns_form(v3io_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V3IO_API", v3io_server)
    monkeypatch.setenv("V3IO_ACCESS_KEY", "k")
    fn = graphpack.new_function("t")
    fn.set_topology("flow", engine="sync").to(handler="(event['missing'])", name="bad").respond()
    fn.spec.error_stream = "v3io:///projects/shop/errors"
    try:
        fn.to_mock_server().test("/", {"x": 1}, silent=True)
    finally:
        close_error_streams()
    q = open_queue("v3io:///projects/shop/errors", poll_interval=0.01)
    [record] = [i.record() for i in drain(q, 0, "g", 1)]
    assert record["step"] == "bad" and record["body"] == {"x": 1} and "KeyError" in record["error"]
    q.close()


def test_stream_trigger_from_each_form() -> None:
    assert V3IOStreamTrigger(url="v3io:///projects/shop/q1").to_dict("s")["attributes"] == {
        "containerName": "projects", "streamPath": "/shop/q1", "consumerGroup": "serving", "seekTo": "earliest"}
    explicit = V3IOStreamTrigger(url="v3ios://web.example.com:8443/projects/q").to_dict("s")
    assert explicit["url"] == "https://web.example.com:8443"
    assert explicit["attributes"]["containerName"] == "projects"
    with pytest.raises(GraphpackError, match="v3ioStream trigger: .*not a v3io URL"):
        V3IOStreamTrigger(url="s3://b/q")
