"""The consumer loop a child function runs on its input queue (at-least-once, DESIGN §4.8).

``Consumer(queue, group, handler)`` reads batches from the shards it owns, calls
``handler(record, item)`` for each item in shard order (``record`` is the decoded wire record),
and commits each shard's checkpoint after its batch. A handler that raises is retried up to
``max_attempts`` times; then the item goes to the dead-letter queue (or ``dead_letter`` callable)
and the shard moves on. Several consumers of one group split the shards: each heartbeats as a
member, shard *i* belongs to member ``i % n`` of the sorted live members, and a lease per shard
makes sure two consumers never process the same shard at once. Leases are renewed between
batches, so one batch (``batch_size`` x handler time) should take well under ``lease_ttl / 2``.

A handler may return an object with ``check()`` (the queue writes the record's event produced,
:class:`graphpack.runtime.durable.Writes`): the batch is committed only after every ``check()``
returned, i.e. after everything it produced downstream is durable (DESIGN §4.9); one that raises
leaves the batch uncommitted, to be delivered again. A batch that was handled but whose
checkpoint could not be written is not handled again: the commit is retried, with an
exponential backoff (``error_backoff`` doubling up to ``max_error_backoff``) while it fails, and
the shard is read on only once it succeeded, so an outage of the store adds no duplicates.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import record as wire
from ..runtime.deps import MissingDependency
from .base import LeaseLost, Queue, QueueItem, StorageError

logger = logging.getLogger("graphpack.queues")

Handler = Callable[[Any, QueueItem], Any]
ErrorCallback = Callable[[QueueItem, BaseException, int], Any]


class Consumer:
    """Drive ``handler`` over a queue as one member of consumer ``group``."""

    def __init__(
        self,
        queue: Queue,
        group: str,
        handler: Handler,
        batch_size: int = 100,
        max_attempts: int = 3,
        dead_letter: bool | Callable[[QueueItem, BaseException], Any] = True,
        on_error: ErrorCallback | None = None,
        owner: str | None = None,
        lease_ttl: float = 10.0,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
        retry_delay: float = 0.0,
        shards: list[int] | None = None,
        cleanup_interval: float | None = 60.0,
        error_backoff: float = 0.1,
        max_error_backoff: float = 10.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.queue = queue
        self.group = group
        self.handler = handler
        self.batch_size = int(batch_size)
        self.max_attempts = int(max_attempts)
        self.dead_letter = dead_letter
        self.on_error = on_error
        self.owner = owner or f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"
        self.lease_ttl = float(lease_ttl)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.retry_delay = float(retry_delay)
        self.error_backoff = float(error_backoff)
        self.max_error_backoff = max(float(max_error_backoff), self.error_backoff)
        self.uncommitted: dict[int, int] = {}  # shard -> offset handled, checkpoint not written yet
        self.fixed_shards = list(shards) if shards is not None else None
        self.owned: set[int] = set()
        self.processed = 0
        self.dead_lettered = 0
        self.errors = 0
        self._stop = threading.Event()
        self._next_balance = 0.0
        self.cleanup_interval = cleanup_interval
        self._next_cleanup = time.monotonic() + (cleanup_interval or 0.0)

    # -- shard ownership ---------------------------------------------------------------------------
    def rebalance(self, force: bool = False) -> set[int]:
        """Heartbeat, then take the shards assigned to this member and give up the others."""
        now = time.monotonic()
        if not force and now < self._next_balance:
            return self.owned
        self._next_balance = now + self.lease_ttl / 3
        if self.fixed_shards is not None:
            wanted = set(self.fixed_shards)
        else:
            members = self.queue.members(self.group, self.owner, self.lease_ttl)
            if self.owner not in members:
                members = sorted(members + [self.owner])
            index, count = members.index(self.owner), len(members)
            wanted = {s for s in range(self.queue.shards) if s % count == index}
        for shard in sorted(self.owned - wanted):
            self._give_up(shard)
        for shard in sorted(wanted):
            if self.queue.acquire(shard, self.group, self.owner, self.lease_ttl):
                if shard not in self.owned:
                    self.queue.rewind(shard, self.group)  # start from the checkpoint, not a stale cursor
                    self.owned.add(shard)
            elif shard in self.owned:
                self._lost(shard)
        return self.owned

    def _give_up(self, shard: int) -> None:
        self.owned.discard(shard)
        self.uncommitted.pop(shard, None)
        self.queue.release(shard, self.group, self.owner)
        self.queue.rewind(shard, self.group)

    def _lost(self, shard: int) -> None:
        logger.warning("consumer %s lost shard %d of group %s", self.owner, shard, self.group)
        self.owned.discard(shard)
        self.uncommitted.pop(shard, None)
        self.queue.rewind(shard, self.group)

    # -- processing --------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Process at most one batch from every owned shard; returns how many items were handled.

        If anything fails between reading a batch and having handled it (a dead-letter push, a
        downstream write, a crash of the handler that is not an ``Exception``), the shard is
        rewound to its checkpoint before the error propagates, so the batch is delivered again.
        If only the commit fails, the batch stays handled and the commit is retried first thing
        next round.
        """
        done = 0
        for shard in sorted(self.rebalance()):
            if self._stop.is_set():
                break
            if shard not in self.rebalance():  # renews leases between shards when they are due
                continue
            if shard in self.uncommitted and not self._commit(shard, self.uncommitted[shard]):
                continue
            items = self.queue.read(shard, self.group, max_records=self.batch_size, timeout=0)
            if not items:
                continue
            try:
                writes = []
                for item in items:
                    out = self._handle(item)
                    if out is not None and hasattr(out, "check"):
                        writes.append(out)
                    done += 1
                for out in writes:
                    out.check()
            except BaseException:
                self.queue.rewind(shard, self.group)
                raise
            self.uncommitted[shard] = items[-1].offset
            self._commit(shard, items[-1].offset)
        self._maybe_cleanup()
        return done

    def _commit(self, shard: int, offset: int) -> bool:
        """Write the checkpoint; False when the shard was lost. Other errors propagate (the
        offset stays in ``uncommitted``, and the caller backs off)."""
        try:
            self.queue.commit(shard, self.group, offset)
        except LeaseLost:
            self._lost(shard)
            return False
        self.uncommitted.pop(shard, None)
        return True

    def _maybe_cleanup(self) -> None:
        """The owner of shard 0 deletes consumed segments every ``cleanup_interval`` seconds."""
        if not self.cleanup_interval or 0 not in self.owned or time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + self.cleanup_interval
        try:
            removed = self.queue.cleanup()
            if removed:
                logger.info("queue %s: removed %d consumed segment(s)", self.queue.url, removed)
        except Exception as exc:  # noqa: BLE001 - housekeeping never stops the flow
            logger.warning("queue %s: cleanup failed: %s", self.queue.url, exc)

    def _handle(self, item: QueueItem) -> Any:
        last: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                out = self.handler(wire.decode(item.data), item)
                self.processed += 1
                return out
            except StorageError:
                raise  # its output could not be stored: not the record's fault; the batch comes again later
            except Exception as exc:  # noqa: BLE001 - any handler error counts as a failed attempt
                last = exc
                if self.on_error is not None:
                    self.on_error(item, exc, attempt)
                if wire.RecordError is type(exc):
                    break  # an undecodable record will not decode on the next try
                if attempt < self.max_attempts and self.retry_delay:
                    time.sleep(self.retry_delay)
        assert last is not None
        logger.error(
            "queue %s shard %d offset %d failed %d time(s), dead-lettered: %s",
            self.queue.url, item.shard, item.offset, self.max_attempts, last,
        )
        self.dead_lettered += 1
        if callable(self.dead_letter):
            self.dead_letter(item, last)
        elif self.dead_letter:
            self.queue.dead_letter(item, last, group=self.group)
        return None

    def run(self, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` (or :meth:`stop`) is set.

        When a round finds nothing, the loop waits ``poll_interval`` and doubles the wait on every
        further empty round up to ``max_poll_interval`` (each poll of an S3 shard is a request).
        Errors (an unreachable store, a full disk) are logged and retried after ``error_backoff``
        seconds, doubled on every further failure up to ``max_error_backoff``; a batch whose
        handling failed is delivered again, one whose commit failed is committed again.
        """
        stop = stop or self._stop
        idle = self.poll_interval
        backoff = self.error_backoff
        try:
            while not stop.is_set() and not self._stop.is_set():
                try:
                    handled = self.run_once()
                except MissingDependency:  # already logged; retrying cannot install it
                    self.errors += 1
                    return
                except Exception as exc:  # noqa: BLE001 - keep consuming after a pause
                    self.errors += 1
                    logger.warning("consumer %s of %s: %s; retrying in %.1f s", self.owner, self.queue.url,
                                   exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_error_backoff)
                    continue
                backoff = self.error_backoff
                if handled == 0:
                    stop.wait(idle)
                    idle = min(idle * 2, self.max_poll_interval)
                else:
                    idle = self.poll_interval
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch."""
        self._stop.set()

    def close(self) -> None:
        """Commit what was handled (best effort), release owned shards and leave the group (the
        queue itself stays open)."""
        for shard, offset in sorted(self.uncommitted.items()):
            try:
                self._commit(shard, offset)
            except Exception as exc:  # noqa: BLE001 - delivered again to the next owner
                logger.warning("could not commit shard %d: %s", shard, exc)
        for shard in sorted(self.owned):
            try:
                self.queue.release(shard, self.group, self.owner)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                logger.warning("could not release shard %d: %s", shard, exc)
        self.owned.clear()
        if self.fixed_shards is None:
            try:
                self.queue.leave(self.group, self.owner)
            except MissingDependency:  # already logged once; the group was never joined
                pass
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                logger.warning("could not leave group %s: %s", self.group, exc)
