"""Fixtures for the queue tests: one factory per backend, all opening the same logical queue."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from graphpack.queues import Queue, memory, open_queue

BACKENDS = ["memory", "file", "s3", "v3io", "kafka"]


@pytest.fixture
def v3io_server() -> Iterator[str]:
    """A local v3io web API fake; yields its endpoint URL."""
    from tests.queues.v3io_fake import serve

    with serve() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def queue_factory(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[..., Queue]]:
    """``factory(**options) -> Queue``: every call opens the same queue afresh (like a new process)."""
    backend = request.param
    name = uuid.uuid4().hex[:10]
    if backend == "memory":
        url, base = f"memory://{name}", {}
    elif backend == "file":
        url, base = str(tmp_path / name), {}
    elif backend == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        url = f"s3://{bucket}/queues/{name}"
        base = {"endpoint_url": request.getfixturevalue("s3_server"), "linger": 0.01, "poll_interval": 0.01}
    elif backend == "kafka":
        url = f"kafka://{request.getfixturevalue('kafka_broker').bootstrap}/q-{name}"
        base = {"poll_interval": 0.01}
    else:
        url = f"v3io://bigdata/queues/{name}"
        base = {"endpoint": request.getfixturevalue("v3io_server"), "access_key": "k", "poll_interval": 0.01}
    opened: list[Queue] = []

    def factory(**options: Any) -> Queue:
        queue = open_queue(url, **{**base, **options})
        queue.check()
        opened.append(queue)
        return queue

    factory.url = url  # type: ignore[attr-defined]
    factory.backend = backend  # type: ignore[attr-defined]
    factory.options = base  # type: ignore[attr-defined]
    yield factory
    for queue in opened:
        queue.close()
    memory.reset(name)
