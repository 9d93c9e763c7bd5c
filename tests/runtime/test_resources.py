"""get_store_resource for local paths, s3:// (moto server) and http://; endpoint_from_state."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from graphpack.errors import GraphpackError
from graphpack.runtime.context import GraphContext
from graphpack.runtime.resources import (
    LocalResource,
    S3Resource,
    clear_cache,
    endpoint_from_state,
    get_store_resource,
)


def test_local_file_and_directory(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello world")
    item = get_store_resource(str(f))
    assert isinstance(item, LocalResource)
    assert item.get() == b"hello world"
    assert item.get(size=5, offset=6) == b"world"
    assert item.get(encoding="utf-8") == "hello world"
    assert item.local() == str(f)
    with item.open() as fh:
        assert fh.read() == b"hello world"
    assert get_store_resource(f"file://{f}").get() == b"hello world"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"x")
    folder = get_store_resource(str(tmp_path), use_cache=False)
    assert folder.is_dir() and folder.listdir() == ["a.txt", "sub/b.bin"]
    with pytest.raises(FileNotFoundError):
        get_store_resource(str(tmp_path / "missing"), use_cache=False).get()
    with pytest.raises(GraphpackError, match="only read modes"):
        item.open("wb")


def test_cache_and_unknown_scheme(tmp_path: Path) -> None:
    path = str(tmp_path / "x")
    assert get_store_resource(path) is get_store_resource(path)
    assert get_store_resource(path, use_cache=False) is not get_store_resource(path)
    with pytest.raises(GraphpackError, match=r"unsupported URL scheme 'gs'.*s3://"):
        get_store_resource("gs://bucket/key")
    with pytest.raises(GraphpackError, match="empty URL"):
        get_store_resource("")


def test_s3_object_and_prefix(s3_client: Any, s3_bucket: str, s3_env: str) -> None:
    clear_cache()
    s3_client.put_object(Bucket=s3_bucket, Key="data/one.json", Body=b'{"a": 1}')
    s3_client.put_object(Bucket=s3_bucket, Key="data/deep/two.bin", Body=b"\x00\x01\x02")
    item = get_store_resource(f"s3://{s3_bucket}/data/one.json")
    assert isinstance(item, S3Resource)
    assert json.loads(item.get()) == {"a": 1}
    assert item.get(size=4, offset=1) == b'"a":'
    local = item.local()
    assert Path(local).read_bytes() == b'{"a": 1}' and local.endswith("one.json")
    with item.open("r") as fh:
        assert json.load(fh) == {"a": 1}

    prefix = get_store_resource(f"s3://{s3_bucket}/data/")
    assert prefix.is_dir()
    assert prefix.listdir() == ["deep/two.bin", "one.json"]
    folder = prefix.local()
    assert Path(folder, "deep", "two.bin").read_bytes() == b"\x00\x01\x02"
    # a prefix given without the trailing slash is a folder too
    assert get_store_resource(f"s3://{s3_bucket}/data", use_cache=False).is_dir()

    with pytest.raises(FileNotFoundError, match="not found: s3://"):
        get_store_resource(f"s3://{s3_bucket}/nope.txt", use_cache=False).get()
    with pytest.raises(GraphpackError, match="has no bucket"):
        get_store_resource("s3:///key")


def test_context_get_store_resource_reads_s3(s3_client: Any, s3_bucket: str, s3_env: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="cfg.txt", Body=b"threshold=3")
    assert GraphContext().get_store_resource(f"s3://{s3_bucket}/cfg.txt", use_cache=False).get() == b"threshold=3"


def test_http_resource(tmp_path: Path) -> None:
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from functools import partial

    (tmp_path / "w.bin").write_bytes(b"weights")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        item = get_store_resource(f"{base}/w.bin", use_cache=False)
        assert item.get() == b"weights"
        assert Path(item.local()).read_bytes() == b"weights"
        with pytest.raises(GraphpackError, match="HTTP 404"):
            get_store_resource(f"{base}/missing.bin", use_cache=False).get()
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_from_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRAPHPACK_STATE", raising=False)
    assert endpoint_from_state("enricher") is None  # no state file: tolerated
    (tmp_path / ".graphpack").mkdir()
    (tmp_path / ".graphpack" / "state.json").write_text("{not json")
    assert endpoint_from_state("enricher") is None
    (tmp_path / ".graphpack" / "state.json").write_text(json.dumps({
        "functions": {"shop-enricher": {"url": "http://127.0.0.1:8081"}, "scorer": {"address": "10.0.0.1:80"}}
    }))
    assert endpoint_from_state("enricher") == "http://127.0.0.1:8081"
    assert endpoint_from_state("scorer") == "http://10.0.0.1:80"
    assert endpoint_from_state("other") is None
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"functions": [{"name": "enricher", "endpoint": "http://h:1"}]}))
    monkeypatch.setenv("GRAPHPACK_STATE", str(other))
    assert endpoint_from_state("enricher") == "http://h:1"
    assert GraphContext().get_remote_endpoint("enricher") == "http://h:1"
    monkeypatch.setenv("GRAPHPACK_ENDPOINT_ENRICHER", "http://env:2")
    assert GraphContext().get_remote_endpoint("proj/enricher:latest") == "http://env:2"
    assert GraphContext().get_remote_endpoint("http://direct:3") == "http://direct:3"
    with pytest.raises(GraphpackError, match="cannot resolve the endpoint of function 'ghost'"):
        GraphContext().get_remote_endpoint("ghost")
    assert os.getcwd() == str(tmp_path)
