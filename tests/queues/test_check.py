"""Bad input fails at build/deploy time (``open_queue`` / ``check()``) with one clear line."""
from __future__ import annotations

import time

import pytest

from graphpack.errors import GraphpackError
from graphpack.queues import QueueError, check_queue_url, open_queue, scheme_of
from tests.plugins.s3 import free_port
from tests.queues.v3io_fake import FakeV3io, serve


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(GraphpackError) as err:
        open_queue("kafka2://broker/topic")
    message = str(err.value)
    assert "unknown queue scheme 'kafka2'" in message
    for scheme in ("memory://", "file://", "s3://", "v3io://"):
        assert scheme in message


def test_plain_path_is_a_file_queue(tmp_path):
    assert scheme_of(str(tmp_path / "q")) == "file"
    assert type(open_queue(str(tmp_path / "q"))).__name__ == "FileQueue"
    assert type(open_queue(f"file://{tmp_path}/q")).__name__ == "FileQueue"


def test_unknown_option_is_an_error():
    with pytest.raises(QueueError, match="unknown option.*shardz"):
        open_queue("memory://x", shardz=3)


def test_bad_urls():
    with pytest.raises(QueueError, match="needs a bucket"):
        open_queue("s3:///prefix")
    with pytest.raises(QueueError, match="v3io://<container>/<stream path>"):
        open_queue("v3io://container-only")
    with pytest.raises(QueueError, match="needs a name"):
        open_queue("memory://")
    with pytest.raises(QueueError, match="shards must be >= 1"):
        open_queue("memory://x", shards=0)


def test_file_queue_on_a_file_is_an_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(QueueError, match="cannot use directory"):
        check_queue_url(str(blocker / "q"))


def test_shard_count_mismatch(tmp_path, s3_server, s3_bucket):
    check_queue_url(str(tmp_path / "q"), shards=2)
    with pytest.raises(QueueError, match="exists with 2 shard"):
        check_queue_url(str(tmp_path / "q"), shards=3)
    url = f"s3://{s3_bucket}/q"
    check_queue_url(url, shards=2, endpoint_url=s3_server)
    with pytest.raises(QueueError, match="exists with 2 shard"):
        check_queue_url(url, shards=4, endpoint_url=s3_server)


def test_s3_missing_bucket(s3_server):
    with pytest.raises(QueueError, match="bucket 'no-such-bucket-here' does not exist"):
        check_queue_url("s3://no-such-bucket-here/q", endpoint_url=s3_server)


def test_s3_no_credentials(s3_server, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(QueueError, match="no AWS credentials"):
        check_queue_url("s3://bucket/q", endpoint_url=s3_server)


def test_s3_unreachable_endpoint_fails_fast(s3_server):
    endpoint = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(QueueError, match=f"cannot reach S3 at {endpoint}"):
        check_queue_url("s3://bucket/q", endpoint_url=endpoint)
    assert time.monotonic() - t0 < 15


def test_v3io_without_endpoint(monkeypatch):
    monkeypatch.delenv("V3IO_API", raising=False)
    with pytest.raises(QueueError, match="no v3io endpoint"):
        check_queue_url("v3io://bigdata/q")


def test_v3io_unreachable():
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(QueueError, match="cannot reach v3io"):
        check_queue_url("v3io://bigdata/q", endpoint=endpoint)


def test_v3io_wrong_access_key():
    with serve(FakeV3io(access_key="right")) as url:
        with pytest.raises(QueueError, match="refused the access key"):
            check_queue_url("v3io://bigdata/q", endpoint=url, access_key="wrong")
        check_queue_url("v3io://bigdata/q", endpoint=url, access_key="right")


def test_v3io_endpoint_from_environment(monkeypatch):
    with serve() as url:
        monkeypatch.setenv("V3IO_API", url.split("://", 1)[1])  # no scheme: http:// is added
        monkeypatch.setenv("V3IO_ACCESS_KEY", "k")
        q = open_queue("v3io://bigdata/envq", shards=3)
        try:
            q.check()
            q.push([{"a": 1}])
            assert q.endpoint == url
        finally:
            q.close()


def test_public_names():
    from graphpack import queues

    for name in queues.__all__:
        assert getattr(queues, name) is not None
    assert set(queues.BACKENDS) == {"memory", "file", "s3", "v3io", "v3ios", "kafka"}


def test_package_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, graphpack.queues, graphpack.queues.consumer; "
            "print(sorted(m for m in ('boto3', 'botocore', 'httpx', 'confluent_kafka') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
