"""Queues between functions, chosen by URL scheme (DESIGN §4.8, §7).

``open_queue("memory://q1")``, ``open_queue("file:///data/q1")`` or a plain path,
``open_queue("s3://bucket/prefix")``, ``open_queue("v3io://container/path")``,
``open_queue("kafka://host:9092/topic")`` or ``open_queue("topic", kafka_brokers="host:9092")`` (as
MLRun: a bare path with ``kafka_brokers`` is a Kafka topic).
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import LeaseLost, Queue, QueueError, QueueItem, RecordTooLarge, StorageError
from .consumer import Consumer
from .errorstream import error_record, push_error

# scheme -> "module:Class"; backends are imported only when used (boto3/httpx stay lazy)
BACKENDS: dict[str, str] = {
    "memory": "graphpack.queues.memory:MemoryQueue",
    "file": "graphpack.queues.file:FileQueue",
    "s3": "graphpack.queues.s3:S3Queue",
    "v3io": "graphpack.queues.v3io:V3ioQueue",
    "v3ios": "graphpack.queues.v3io:V3ioQueue",
    "kafka": "graphpack.queues.kafka:KafkaQueue",
}


def scheme_of(url: str, **options: Any) -> str:
    """The backend scheme of a queue URL; a plain path means ``file`` (``kafka`` when the options
    name ``kafka_brokers``, as MLRun reads a queue step)."""
    if not isinstance(url, str) or not url:
        raise QueueError(f"queue URL must be a non-empty string, got {url!r}")
    if "://" not in url:
        return "kafka" if options.get("kafka_brokers") else "file"
    return url.split("://", 1)[0].lower()


def open_queue(url: str, **options: Any) -> Queue:
    """Open the queue at ``url`` with backend ``options`` (e.g. ``shards=4``)."""
    scheme = scheme_of(url, **options)
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise QueueError(f"unknown queue scheme {scheme!r} in {url!r}; known schemes: {known} or a path")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(url, **options)


def check_queue_url(url: str, **options: Any) -> None:
    """Open the queue, run its ``check()`` and close it: for build/deploy-time validation."""
    queue = open_queue(url, **options)
    try:
        queue.check()
    finally:
        queue.close()


__all__ = [
    "BACKENDS",
    "Consumer",
    "LeaseLost",
    "Queue",
    "QueueError",
    "QueueItem",
    "RecordTooLarge",
    "check_queue_url",
    "error_record",
    "open_queue",
    "push_error",
    "StorageError",
    "scheme_of",
]
