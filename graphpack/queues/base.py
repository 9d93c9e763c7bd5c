"""The ``Queue`` interface every backend implements (DESIGN §4.8, §7).

A queue has ``shards`` numbered ``0..shards-1``. Producers ``push`` records (wire dicts from
:func:`graphpack.queues.record.wrap`, bare bodies, or bytes); a record with a ``key`` always lands on
the same shard, others go round robin. Consumers ``read`` a shard as a named group: each group has an
in-memory cursor per shard that starts after the group's committed checkpoint, so a consumer that
restarts gets everything after its last ``commit`` again (at-least-once). Offsets increase within a
shard; ``commit(shard, group, offset)`` records that everything up to and including ``offset`` is done.

Durability (DESIGN §4.9): ``submit`` hands records to the queue's group committer
(:mod:`graphpack.queues.commit`) and returns a :class:`~graphpack.queues.commit.Ticket` that is done
once they are durable (fsynced, a completed PUT, acknowledged by the store); ``push`` is ``submit``
and wait. Whoever acknowledges an event (an HTTP 2xx, an upstream offset commit) waits for the
tickets of every record the event produced.

Shard ownership for groups with several consumers: ``members`` (heartbeat + list) and ``acquire`` /
``release`` (a lease per shard and group) let :class:`graphpack.queues.consumer.Consumer` split shards
so that two members of a group never own the same shard.
"""
from __future__ import annotations

import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from ..errors import GraphpackError
from . import record as wire
from .commit import STORED, GroupCommitter, Ticket

DEFAULT_MAX_RECORD_SIZE = 1024 * 1024  # bytes, the v3io PutRecords limit for one record
DEAD_LETTER_SUFFIX = "-dead-letter"


class QueueError(GraphpackError):
    """A queue cannot be used: bad URL, unreachable store, missing bucket or credentials."""


class StorageError(QueueError):
    """The store failed or could not be reached: the records were not stored (answered 503)."""


class RecordTooLarge(QueueError):
    """A record is larger than the queue accepts."""


class LeaseLost(QueueError):
    """Another consumer of the group took over the shard (the commit was refused)."""


@dataclass(frozen=True)
class QueueItem:
    """One record read from a shard: ``offset`` is what to pass to ``commit``."""

    shard: int
    offset: int
    data: bytes

    def record(self) -> Any:
        """The decoded wire record (a wrapped dict or a bare body)."""
        return wire.decode(self.data)


def shard_for(key: Any, shards: int) -> int:
    """The shard a record key maps to (stable across processes and runs)."""
    return zlib.crc32(str(key).encode()) % shards


class Queue(ABC):
    """A sharded, durable queue with consumer groups; subclasses implement the ``_`` methods."""

    scheme = ""
    group_commit = True  # backends whose writes cost a round trip batch them (False: memory)
    LINGER = 0.002  # default group-commit window, seconds
    FLUSH_RECORDS = 10_000
    FLUSH_BYTES = 4 * 1024 * 1024

    def __init__(
        self,
        url: str,
        shards: int = 1,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        dead_letter: str | None = None,
        retention_in_hours: float | None = None,
        linger: float | None = None,
        flush_records: int | None = None,
        flush_bytes: int | None = None,
        **options: Any,
    ) -> None:
        if int(shards) < 1:
            raise QueueError(f"queue {url!r}: shards must be >= 1, got {shards}")
        if options:
            raise QueueError(f"queue {url!r}: unknown option(s) {', '.join(sorted(options))}")
        self.url = url
        self.shards = int(shards)
        self.max_record_size = int(max_record_size)
        self.retention_in_hours = retention_in_hours  # v3io stream retention; others keep until cleanup()
        self.dead_letter_url = dead_letter if dead_letter is not None else self._dead_letter_default()
        self._dead_letter_queue: Queue | None = None
        self._lock = threading.RLock()  # producer state
        self._read_lock = threading.RLock()  # consumer cursors (held across reads, apart from pushes)
        self._round_robin = 0
        self._cursors: dict[tuple[str, int], Any] = {}
        self.closed = False
        self.linger = float(self.LINGER if linger is None else linger)
        self.flush_records = int(flush_records or self.FLUSH_RECORDS)
        self.flush_bytes = int(flush_bytes or self.FLUSH_BYTES)
        self._committer: GroupCommitter | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} shards={self.shards}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- producing ---------------------------------------------------------------------------
    def push(self, records: Iterable[Any]) -> None:
        """Append records and return once they are durable (raises StorageError if they are not)."""
        self.submit(records).wait()

    def submit(self, records: Iterable[Any]) -> Ticket:
        """Hand records to the group commit (all or nothing for size checks); each goes to its key's
        shard. The returned ticket is done once they are durable."""
        by_shard: dict[int, list[bytes]] = {}
        for rec in records:
            data = wire.encode(rec, self.url)
            if len(data) > self.max_record_size:
                raise RecordTooLarge(
                    f"event of {len(data)} bytes is larger than the {self.max_record_size} byte limit "
                    f"of queue {self.url!r}"
                )
            by_shard.setdefault(self._pick_shard(rec), []).append(data)
        if not by_shard:
            return STORED
        if not self.group_commit:
            self._append(by_shard)
            return STORED
        committer = self._committer
        if committer is None:
            with self._lock:
                if self._committer is None:
                    self._committer = GroupCommitter(self._append, self.url, self.linger, self.flush_records,
                                                     self.flush_bytes, self._storage_error)
                committer = self._committer
        return committer.submit(by_shard)

    def _storage_error(self, exc: BaseException) -> BaseException:
        """The error a failed write is reported as: a StorageError naming the queue."""
        if isinstance(exc, QueueError):
            return exc if isinstance(exc, StorageError) else StorageError(str(exc))
        if isinstance(exc, GraphpackError):  # e.g. a missing package: not the store's fault
            return exc
        if isinstance(exc, OSError):
            return StorageError(f"queue {self.url!r}: write failed: {exc.strerror or exc}")
        return StorageError(f"queue {self.url!r}: write failed: {type(exc).__name__}: {exc}")

    def _pick_shard(self, rec: Any) -> int:
        if self.shards == 1:
            return 0
        key = rec.get("key") if isinstance(rec, dict) and rec.get(wire.WRAPPER_KEY) else None
        if key is not None:
            return shard_for(key, self.shards)
        with self._lock:
            self._round_robin = (self._round_robin + 1) % self.shards
            return self._round_robin

    def flush(self) -> None:
        """Wait until every submitted record is durable and visible; raises the last write's error."""
        if self._committer is not None:
            self._committer.flush()

    # -- consuming ---------------------------------------------------------------------------
    def read(self, shard: int, group: str, max_records: int = 100, timeout: float = 0.0) -> list[QueueItem]:
        """Up to ``max_records`` items after the group's cursor; waits up to ``timeout`` s for one."""
        self._check_shard(shard)
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            items = self._read(shard, group, max_records)
            if items or time.monotonic() >= deadline or self.closed:
                return items
            self._wait(shard, min(self._poll_interval(), max(deadline - time.monotonic(), 0.0)))

    def rewind(self, shard: int, group: str) -> None:
        """Forget the group's cursor so the next read starts after its committed checkpoint."""
        with self._read_lock:
            self._cursors.pop((group, shard), None)

    def commit(self, shard: int, group: str, offset: int) -> None:
        """Record that the group is done with ``shard`` up to and including ``offset``."""
        self._check_shard(shard)
        self._commit(shard, group, int(offset))

    def end_offset(self, shard: int) -> int | None:
        """The offset the next record pushed to ``shard`` gets (a consumer's lag in records);
        None when the backend cannot tell cheaply."""
        return None

    @abstractmethod
    def committed(self, shard: int, group: str) -> int | None:
        """The group's last committed offset on ``shard`` (None when nothing was committed)."""

    def dead_letter(self, item: QueueItem, error: BaseException | str, group: str = "") -> None:
        """Push ``item`` with the error to the dead-letter queue (``<url>-dead-letter`` by default)."""
        try:
            original: Any = wire.decode(item.data)
        except wire.RecordError:
            original = item.data.decode("utf-8", "replace")
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        rec = {
            "dead_letter": True,
            "queue": self.url,
            "group": group,
            "shard": item.shard,
            "offset": item.offset,
            "error": message,
            "record": original,
        }
        with self._lock:
            if self._dead_letter_queue is None:
                from . import open_queue

                self._dead_letter_queue = open_queue(self.dead_letter_url, **self._dead_letter_options())
        self._dead_letter_queue.push([rec])
        self._dead_letter_queue.flush()

    # -- group membership and shard leases ----------------------------------------------------
    @abstractmethod
    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        """Heartbeat ``owner`` in ``group`` and return the live members, sorted."""

    @abstractmethod
    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease on ``shard`` for ``owner``; False if another member holds it."""

    @abstractmethod
    def release(self, shard: int, group: str, owner: str) -> None:
        """Give up the lease (only if ``owner`` holds it)."""

    def leave(self, group: str, owner: str) -> None:
        """Remove ``owner`` from the group's members (best effort)."""

    # -- lifecycle -----------------------------------------------------------------------------
    def check(self) -> None:
        """Fail now with a clear QueueError if the queue cannot be used (call at build/deploy time)."""

    def cleanup(self) -> int:
        """Delete data every known group has committed; returns how many segments went."""
        return 0

    def close(self) -> None:
        """Flush and release resources; the queue cannot be used afterwards."""
        if self.closed:
            return
        try:
            if self._committer is not None:
                self._committer.close()
        finally:
            self.closed = True
            if self._dead_letter_queue is not None:
                self._dead_letter_queue.close()

    # -- for subclasses ------------------------------------------------------------------------
    @abstractmethod
    def _append(self, by_shard: dict[int, list[bytes]]) -> Callable[[], None] | None:
        """Append encoded records, grouped by shard (order within a shard kept); called by the
        group committer's writer thread, one batch at a time (at once when ``group_commit`` is
        False). Returns None when the records are durable, or a function that makes them durable
        (an fsync), which the committer may run while later batches are appended."""

    @abstractmethod
    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        """Items after the group's cursor, without waiting; advance the cursor past them."""

    @abstractmethod
    def _commit(self, shard: int, group: str, offset: int) -> None:
        """Persist the checkpoint."""

    def _wait(self, shard: int, seconds: float) -> None:
        time.sleep(seconds)

    def _poll_interval(self) -> float:
        return 0.02

    def _dead_letter_default(self) -> str:
        return self.url.rstrip("/") + DEAD_LETTER_SUFFIX

    def _dead_letter_options(self) -> dict:
        return {}

    def _check_shard(self, shard: int) -> None:
        if not 0 <= shard < self.shards:
            raise QueueError(f"queue {self.url!r} has shards 0..{self.shards - 1}, not {shard}")
