"""Group commit: concurrent pushes to a queue share one durable write (DESIGN §4.9).

Records submitted to a queue gather in one open batch. A writer thread makes the batch durable
with the backend's ``_append`` (one write + fsync per shard touched for a file queue, one PUT per
shard for S3, one PutRecords call for v3io) once the batch is ``linger`` seconds old, once it is
full (``flush_records`` records or ``flush_bytes`` bytes), or at once when a caller waits for it
(:meth:`Ticket.wait`: nobody else will add to it while its only producer blocks). While one batch
is being written the next one fills, so under load a batch grows with the write time, and the
added latency stays below ``linger`` + one write.

When the backend's write leaves the records to be synced (a file queue writes in order, then
fsyncs), the fsync runs on one of ``SYNC_THREADS`` threads while the writer appends the next
batch: fsyncs overlap, so throughput is not bounded by one fsync's latency per batch.

Each submit returns a :class:`Ticket`: done when its records are durable, failed (with a
:class:`~graphpack.queues.base.StorageError` naming the queue) when the write failed. A failed
batch is not retried: its events were not stored, and whoever waits on them answers 503 so that
the client sends them again.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Writer = Callable[[dict[int, list[bytes]]], "Callable[[], None] | None"]
SYNC_THREADS = 4  # fsyncs in flight at once per queue


class Batch:
    """Records waiting for one durable write, by shard."""

    __slots__ = ("by_shard", "records", "size", "since", "future", "urgent")

    def __init__(self) -> None:
        self.by_shard: dict[int, list[bytes]] = {}
        self.records = 0
        self.size = 0
        self.since = time.monotonic()
        self.future: Future = Future()
        self.urgent = False


class Ticket:
    """The durability of one push: :meth:`wait` returns once its records are stored, or raises."""

    __slots__ = ("committer", "batch")

    def __init__(self, committer: GroupCommitter | None, batch: Batch | None) -> None:
        self.committer = committer
        self.batch = batch

    def done(self) -> bool:
        return self.batch is None or self.batch.future.done()

    def error(self) -> BaseException | None:
        """The write's error once done (None when stored or not done yet)."""
        if self.batch is None or not self.batch.future.done():
            return None
        return self.batch.future.exception()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the records are durable; raises the write's error."""
        if self.batch is None:
            return
        if not self.batch.future.done() and self.committer is not None:
            self.committer.hurry(self.batch)
        self.batch.future.result(timeout)

    def add_done_callback(self, callback: Callable[[BaseException | None], Any]) -> None:
        """Call ``callback(error or None)`` when the write ends (at once if it has)."""
        if self.batch is None:
            callback(None)
            return
        self.batch.future.add_done_callback(lambda future: callback(future.exception()))


STORED = Ticket(None, None)  # the ticket of records stored synchronously


def failed(error: BaseException) -> Ticket:
    """A ticket that failed with ``error`` (a push that raised before reaching the writer)."""
    batch = Batch()
    batch.future.set_exception(error)
    return Ticket(None, batch)


class GroupCommitter:
    """One writer thread per queue that writes batches with ``write(by_shard)``."""

    def __init__(self, write: Writer, name: str, linger: float, flush_records: int, flush_bytes: int,
                 wrap_error: Callable[[BaseException], BaseException]) -> None:
        self.write = write
        self.name = name
        self.linger = max(float(linger), 0.0)
        self.flush_records = max(int(flush_records), 1)
        self.flush_bytes = max(int(flush_bytes), 1)
        self.wrap_error = wrap_error
        self.batches = 0  # durable writes done (for benchmarks and tests)
        self._cond = threading.Condition(threading.Lock())
        self._open: Batch | None = None
        self._full: collections.deque[Batch] = collections.deque()  # closed batches, oldest first
        self._writing: Batch | None = None
        self._syncing: set[Batch] = set()
        self._sync_jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._sync_slots = threading.BoundedSemaphore(SYNC_THREADS)
        self._sync_threads: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, by_shard: dict[int, list[bytes]]) -> Ticket:
        """Add records to the open batch; the ticket is done when that batch is durable."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"queue {self.name!r} is closed")
            batch = self._open
            if batch is None:
                batch = self._open = Batch()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"queue-commit {self.name}",
                                                    daemon=True)
                    self._thread.start()
                self._cond.notify()
            for shard, datas in by_shard.items():
                batch.by_shard.setdefault(shard, []).extend(datas)
                batch.records += len(datas)
                batch.size += sum(map(len, datas))
            if batch.records >= self.flush_records or batch.size >= self.flush_bytes:
                self._full.append(batch)  # closed: the next submit opens a new batch
                self._open = None
                self._cond.notify()
            elif self.linger == 0 and not batch.urgent:
                batch.urgent = True
                self._cond.notify()
            return Ticket(self, batch)

    def hurry(self, batch: Batch) -> None:
        """Write ``batch`` without waiting for the rest of its window."""
        with self._cond:
            if not batch.urgent:
                batch.urgent = True
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is written; raises the last batch's error."""
        with self._cond:
            batches = [b for b in (*self._syncing, self._writing, *self._full, self._open) if b is not None]
        for batch in batches:
            self.hurry(batch)
        for batch in batches:
            batch.future.result(timeout)

    def close(self) -> None:
        """Write what is open, then stop the writer thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=30)
            for _ in self._sync_threads:
                self._sync_jobs.put(None)

    def _next(self) -> Batch | None:
        """The next batch to write once it is due (None: closed and nothing left)."""
        with self._cond:
            while self._open is None and not self._full:
                if self._closed:
                    return None
                self._cond.wait()
            if self._full:
                batch = self._writing = self._full.popleft()
                return batch
            assert self._open is not None
            batch = self._open
            while not (batch.urgent or self._closed or self._full):
                remaining = batch.since + self.linger - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._full:  # it filled up meanwhile, or an older one did
                batch = self._full.popleft()
            else:
                self._open = None
            self._writing = batch
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                sync = self.write(batch.by_shard)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter of the batch
                self._done(batch, exc)
                continue
            if sync is None:
                self._done(batch, None)
                continue
            self._sync_slots.acquire()  # at most SYNC_THREADS fsyncs in flight
            with self._cond:
                self._syncing.add(batch)
                self._writing = None
                if len(self._sync_threads) < SYNC_THREADS:
                    thread = threading.Thread(target=self._sync_loop, name=f"queue-sync {self.name}", daemon=True)
                    self._sync_threads.append(thread)
                    thread.start()
            self._sync_jobs.put((batch, sync))

    def _sync_loop(self) -> None:
        while True:
            job = self._sync_jobs.get()
            if job is None:
                return
            batch, sync = job
            try:
                sync()
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter of the batch
                self._done(batch, exc)
            else:
                self._done(batch, None)
            finally:
                self._sync_slots.release()

    def _done(self, batch: Batch, error: BaseException | None) -> None:
        with self._cond:
            self._syncing.discard(batch)
            if self._writing is batch:
                self._writing = None
        if error is not None:
            batch.future.set_exception(self.wrap_error(error))
        else:
            self.batches += 1
            batch.future.set_result(None)
