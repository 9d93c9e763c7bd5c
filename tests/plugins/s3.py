"""pytest plugin: a real S3 endpoint (moto in server mode) on 127.0.0.1 for the whole session.

Fixtures:
- ``s3_server``  (session): starts ``python -m moto.server`` on a free port, waits until it answers,
  sets dummy AWS credentials and region in ``os.environ`` (inherited by subprocesses) and yields the
  endpoint URL, e.g. ``http://127.0.0.1:40123``.
- ``s3_client``  (session): a boto3 S3 client for that endpoint.
- ``s3_bucket``  (function): a fresh, empty bucket name (created on the server).
- ``s3_env``     (function): additionally sets ``AWS_ENDPOINT_URL`` so code that builds its own boto3
  client without an ``endpoint_url`` reaches the server (restored afterwards).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tests.plugins.net import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not answer at {url} within {timeout:.0f} s")


@contextmanager
def moto_server() -> Iterator[str]:
    """Run ``python -m moto.server`` on 127.0.0.1 with dummy credentials in ``os.environ``.

    Usable outside pytest (benchmarks): ``with moto_server() as endpoint: ...``.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        os.environ.update(CREDENTIALS)
        try:
            try:
                _wait_until_up(url, proc)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}: {log.read().decode(errors='replace')[-2000:]}") from None
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of a moto S3 server running for the whole test session."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_client(s3_server: str) -> Any:
    """A boto3 S3 client talking to the session's moto server."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name=CREDENTIALS["AWS_DEFAULT_REGION"])


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A new, empty bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3's default endpoint at the moto server for this test; yields the endpoint URL."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server
