"""``memory://name``: an in-process queue, the public fake for tests (same contract as the others).

Queues with the same name share state within the process until :func:`reset` is called, so a
producer and a consumer opened separately (as the mock server does) see the same records.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .base import Queue, QueueError, QueueItem


@dataclass
class _State:
    shards: int
    records: list[list[bytes]]
    cond: threading.Condition = field(default_factory=threading.Condition)
    checkpoints: dict[tuple[str, int], int] = field(default_factory=dict)
    leases: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)
    members: dict[str, dict[str, float]] = field(default_factory=dict)


_registry: dict[str, _State] = {}
_registry_lock = threading.Lock()


def reset(name: str | None = None) -> None:
    """Drop one in-memory queue (by name) or all of them."""
    with _registry_lock:
        if name is None:
            _registry.clear()
        else:
            _registry.pop(name, None)


class MemoryQueue(Queue):
    """Records kept in lists per shard; offsets are list indexes."""

    scheme = "memory"
    group_commit = False  # an append is as stored as it gets: at once

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.name = url.split("://", 1)[-1].strip("/")
        if not self.name:
            raise QueueError(f"queue {url!r}: memory:// needs a name, e.g. memory://q1")
        with _registry_lock:
            state = _registry.get(self.name)
            if state is None:
                state = _registry[self.name] = _State(self.shards, [[] for _ in range(self.shards)])
            elif state.shards != self.shards:
                raise QueueError(
                    f"queue {url!r} already exists with {state.shards} shard(s), not {self.shards}"
                )
        self._state = state

    def _append(self, by_shard: dict[int, list[bytes]]) -> None:
        with self._state.cond:
            for shard, datas in by_shard.items():
                self._state.records[shard].extend(datas)
            self._state.cond.notify_all()

    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        with self._read_lock:
            start = self._cursors.get((group, shard))
            if start is None:
                done = self.committed(shard, group)
                start = 0 if done is None else done + 1
            with self._state.cond:
                datas = self._state.records[shard][start:start + max_records]
            self._cursors[(group, shard)] = start + len(datas)
        return [QueueItem(shard, start + i, d) for i, d in enumerate(datas)]

    def _wait(self, shard: int, seconds: float) -> None:
        with self._state.cond:
            self._state.cond.wait(seconds)

    def _poll_interval(self) -> float:
        return 0.05

    def _commit(self, shard: int, group: str, offset: int) -> None:
        with self._state.cond:
            self._state.checkpoints[(group, shard)] = offset

    def committed(self, shard: int, group: str) -> int | None:
        with self._state.cond:
            return self._state.checkpoints.get((group, shard))

    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        now = time.monotonic()
        with self._state.cond:
            live = self._state.members.setdefault(group, {})
            live[owner] = now + ttl
            for name, expires in list(live.items()):
                if expires < now:
                    del live[name]
            return sorted(live)

    def leave(self, group: str, owner: str) -> None:
        with self._state.cond:
            self._state.members.get(group, {}).pop(owner, None)

    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._state.cond:
            holder = self._state.leases.get((group, shard))
            if holder is not None and holder[0] != owner and holder[1] > now:
                return False
            self._state.leases[(group, shard)] = (owner, now + ttl)
            return True

    def release(self, shard: int, group: str, owner: str) -> None:
        with self._state.cond:
            holder = self._state.leases.get((group, shard))
            if holder is not None and holder[0] == owner:
                del self._state.leases[(group, shard)]

    def end_offset(self, shard: int) -> int:
        return self.size(shard)

    def size(self, shard: int) -> int:
        """How many records the shard holds (for tests)."""
        with self._state.cond:
            return len(self._state.records[shard])
