"""A child function's consumer as a separate process, for the kill -9 tests.

``python -m tests.queues.child_worker URL GROUP OUT OWNER '{"batch_size": 50, ...}'``: consumes the
queue and appends ``<owner> <shard> <n>`` per record to OUT with one ``write`` each (a line survives a
SIGKILL once written). ``delay`` slows the handler so that kills land mid-stream.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from graphpack.queues import open_queue
from graphpack.queues.consumer import Consumer


def main(argv: list[str]) -> None:
    url, group, out, owner, raw = argv
    settings = json.loads(raw)
    delay = settings.pop("delay", 0.0)
    consumer_options = {k: settings.pop(k) for k in ("batch_size", "lease_ttl") if k in settings}
    queue = open_queue(url, **settings)
    queue.check()
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handler(record: dict, item) -> None:
        os.write(fd, f"{owner} {item.shard} {record['body']['n']}\n".encode())
        if delay:
            time.sleep(delay)

    consumer = Consumer(queue, group, handler, owner=owner, poll_interval=0.01, **consumer_options)
    print("ready", flush=True)
    consumer.run(threading.Event())


if __name__ == "__main__":
    main(sys.argv[1:])
