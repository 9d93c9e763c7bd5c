"""``file:///dir`` or a plain path: a durable queue in a local directory.

Layout::

    meta.json                         {"shards": N}
    shards/<s>/<first offset>.seg     append-only segments of frames
    shards/<s>/.lock                  producers append under flock
    groups/<g>/<s>.ckpt               {"offset": n}, written atomically (tmp + fsync + rename)
    groups/<g>/<s>.lease              a consumer owns the shard while it holds flock on this file
    groups/<g>/members/<owner>        heartbeat files (mtime)

A frame is ``>QII`` (offset, length, crc32) + data. One group-commit batch (many pushes, see
:mod:`graphpack.queues.commit`) is one ``write`` and, with ``fsync=True`` (the default), one
``fsync`` per shard touched; a write that fails (disk full, read-only) is cut off again. A producer killed mid-write leaves a
torn frame that readers never return and the next producer truncates. Leases are ``flock`` locks, so a
killed consumer's shards are free at once.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import struct
import time
import uuid
import zlib
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .base import Queue, QueueError, QueueItem, StorageError

FRAME = struct.Struct(">QII")
SEGMENT_BYTES = 64 * 1024 * 1024


def _path_of(url: str) -> Path:
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    return Path(url)


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _scan(f: Any, pos: int, offset: int | None, limit: int | None = None) -> tuple[list[tuple[int, bytes]], int]:
    """Parse complete, valid frames from ``pos``; returns ([(offset, data)], position after them)."""
    f.seek(pos)
    out: list[tuple[int, bytes]] = []
    while limit is None or len(out) < limit:
        header = f.read(FRAME.size)
        if len(header) < FRAME.size:
            break
        off, length, crc = FRAME.unpack(header)
        data = f.read(length)
        if len(data) < length or zlib.crc32(data) != crc or (offset is not None and off != offset):
            break
        out.append((off, data))
        pos += FRAME.size + length
        offset = off + 1
    return out, pos


class FileQueue(Queue):
    """Append-only segment files per shard in a local directory."""

    scheme = "file"

    def __init__(self, url: str, fsync: bool = True, segment_bytes: int = SEGMENT_BYTES, **options: Any) -> None:
        super().__init__(url, **options)
        self.root = _path_of(url)
        if not str(self.root):
            raise QueueError(f"queue {url!r}: empty path")
        self.fsync = bool(fsync)
        self.segment_bytes = int(segment_bytes)
        self._tails: dict[int, tuple[Path, int, int]] = {}  # shard -> (segment, size, next offset)
        self._ends: dict[int, tuple[Path, int, int]] = {}  # the same, as a reader last saw it (end_offset)
        self._lease_fds: dict[tuple[str, int], int] = {}
        self._ready = False

    # -- setup -----------------------------------------------------------------------------------
    def check(self) -> None:
        self._ensure()

    def _ensure(self) -> None:
        if self._ready:
            return
        try:
            for shard in range(self.shards):
                (self.root / "shards" / str(shard)).mkdir(parents=True, exist_ok=True)
            (self.root / "groups").mkdir(exist_ok=True)
            meta = self.root / "meta.json"
            if meta.exists():
                stored = json.loads(meta.read_text()).get("shards")
                if stored != self.shards:
                    raise QueueError(f"queue {self.url!r} exists with {stored} shard(s), not {self.shards}")
            else:
                write_atomic(meta, json.dumps({"shards": self.shards}).encode(), self.fsync)
        except OSError as exc:
            raise QueueError(f"queue {self.url!r}: cannot use directory {self.root}: {exc.strerror or exc}") from None
        self._ready = True

    def _shard_dir(self, shard: int) -> Path:
        return self.root / "shards" / str(shard)

    def _segments(self, shard: int) -> list[tuple[int, Path]]:
        out = []
        for entry in os.scandir(self._shard_dir(shard)):
            if entry.name.endswith(".seg"):
                out.append((int(entry.name[:-4]), Path(entry.path)))
        return sorted(out)

    # -- producing -------------------------------------------------------------------------------
    def _append(self, by_shard: dict[int, list[bytes]]) -> Callable[[], None] | None:
        """Write the records in order under each shard's lock; returns the fsync that makes them
        durable (the group committer runs it, possibly while later batches are written)."""
        self._ensure()
        written: list[tuple[Path, bool]] = []
        for shard, datas in by_shard.items():
            # read-only descriptors for locks: a held lock never keeps the filesystem from going read-only
            lock_fd = os.open(self._shard_dir(shard) / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                segment, size, next_offset = self._tail(shard)
                if size >= self.segment_bytes:
                    segment, size = self._shard_dir(shard) / f"{next_offset:020d}.seg", 0
                buf = bytearray()
                for data in datas:
                    buf += FRAME.pack(next_offset, len(data), zlib.crc32(data))
                    buf += data
                    next_offset += 1
                try:
                    with open(segment, "ab") as f:
                        f.write(buf)
                except OSError as exc:
                    self._undo(segment, size)
                    raise StorageError(f"queue {self.url!r}: cannot write {segment}: "
                                       f"{exc.strerror or exc}") from None
                self._tails[shard] = (segment, size + len(buf), next_offset)
                written.append((segment, size == 0))
            finally:
                os.close(lock_fd)
        return (lambda: self._sync(written)) if self.fsync else None

    def _sync(self, written: list[tuple[Path, bool]]) -> None:
        """fsync the segments written (and the directory of a new one)."""
        for segment, new in written:
            try:
                fd = os.open(segment, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if new:
                    _fsync_dir(segment.parent)
            except FileNotFoundError:
                continue  # consumed by every group and cleaned up meanwhile: nothing left to keep
            except OSError as exc:
                raise StorageError(f"queue {self.url!r}: cannot sync {segment}: {exc.strerror or exc}") from None

    @staticmethod
    def _undo(segment: Path, size: int) -> None:
        """Cut a failed write off the segment, so that no reader sees records that were not acknowledged."""
        try:
            if size:
                os.truncate(segment, size)
            else:
                segment.unlink(missing_ok=True)
        except OSError:
            pass  # the next writer truncates a torn frame; a whole frame may stay (at-least-once)

    def _tail(self, shard: int) -> tuple[Path, int, int]:
        """The last segment, its valid size and the next offset (call under the shard lock)."""
        cached = self._tails.get(shard)
        segments = self._segments(shard)
        if not segments:
            return self._shard_dir(shard) / f"{0:020d}.seg", 0, 0
        first, segment = segments[-1]
        if cached and cached[0] == segment:
            _, pos, next_offset = cached
        else:
            pos, next_offset = 0, first
        actual = segment.stat().st_size
        if actual != pos:
            with open(segment, "rb") as f:
                frames, pos = _scan(f, pos, next_offset)
            if frames:
                next_offset = frames[-1][0] + 1
            if actual > pos:  # a torn frame from a producer that died mid-write
                os.truncate(segment, pos)
        return segment, pos, next_offset

    # -- consuming -------------------------------------------------------------------------------
    def end_offset(self, shard: int) -> int:
        """The next offset of ``shard``: its last segment scanned from where the last call stopped
        (read only: a torn frame is left to the next producer)."""
        self._ensure()
        segments = self._segments(shard)
        if not segments:
            return 0
        first, segment = segments[-1]
        cached = self._ends.get(shard)
        pos, next_offset = (cached[1], cached[2]) if cached and cached[0] == segment else (0, first)
        try:
            with open(segment, "rb") as f:
                frames, pos = _scan(f, pos, next_offset)
        except FileNotFoundError:  # cleaned up meanwhile
            return next_offset
        if frames:
            next_offset = frames[-1][0] + 1
        self._ends[shard] = (segment, pos, next_offset)
        return next_offset

    def _start(self, shard: int, group: str) -> tuple[int, int, int]:
        """(segment first offset, byte position, next offset) to resume the group from."""
        (self.root / "groups" / group).mkdir(parents=True, exist_ok=True)
        done = self.committed(shard, group)
        target = 0 if done is None else done + 1
        segments = self._segments(shard)
        candidates = [s for s in segments if s[0] <= target]
        if not candidates:
            if not segments:
                return 0, 0, 0
            return segments[0][0], 0, segments[0][0]
        first, path = candidates[-1]
        with open(path, "rb") as f:
            frames, pos = _scan(f, 0, first, target - first)
        return first, pos, first + len(frames)

    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        self._ensure()
        with self._read_lock:
            cursor = self._cursors.get((group, shard)) or self._start(shard, group)
            first, pos, next_offset = cursor
            path = self._shard_dir(shard) / f"{first:020d}.seg"
            frames: list[tuple[int, bytes]] = []
            try:
                with open(path, "rb") as f:
                    frames, pos = _scan(f, pos, next_offset, max_records)
            except FileNotFoundError:
                pass
            if frames:
                next_offset = frames[-1][0] + 1
            elif (self._shard_dir(shard) / f"{next_offset:020d}.seg").exists() and next_offset != first:
                first, pos = next_offset, 0  # this segment is finished; move to the next one
                self._cursors[(group, shard)] = (first, pos, next_offset)
                return self._read(shard, group, max_records)
            self._cursors[(group, shard)] = (first, pos, next_offset)
        return [QueueItem(shard, off, data) for off, data in frames]

    def _poll_interval(self) -> float:
        return 0.01

    def _ckpt(self, shard: int, group: str) -> Path:
        return self.root / "groups" / group / f"{shard}.ckpt"

    def _commit(self, shard: int, group: str, offset: int) -> None:
        self._ensure()
        path = self._ckpt(shard, group)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"offset": offset}).encode(), self.fsync)

    def committed(self, shard: int, group: str) -> int | None:
        try:
            return int(json.loads(self._ckpt(shard, group).read_bytes())["offset"])
        except FileNotFoundError:
            return None

    # -- membership and leases -------------------------------------------------------------------
    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        folder = self.root / "groups" / group / "members"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / owner).write_bytes(b"")
        os.utime(folder / owner)
        now = time.time()
        live = []
        for entry in os.scandir(folder):
            try:
                age = now - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if age <= ttl:
                live.append(entry.name)
            elif age > 10 * ttl:
                Path(entry.path).unlink(missing_ok=True)
        return sorted(live)

    def leave(self, group: str, owner: str) -> None:
        (self.root / "groups" / group / "members" / owner).unlink(missing_ok=True)

    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        key = (group, shard)
        with self._lock:
            if key in self._lease_fds:
                return True
            folder = self.root / "groups" / group
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{shard}.lease"
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # held while owned: read-only (see _append)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                path.write_text(owner)  # who holds it, for people looking at the directory
            except OSError:
                pass
            self._lease_fds[key] = fd
            return True

    def release(self, shard: int, group: str, owner: str) -> None:
        with self._lock:
            fd = self._lease_fds.pop((group, shard), None)
        if fd is not None:
            os.close(fd)

    # -- retention and lifecycle -----------------------------------------------------------------
    def cleanup(self) -> int:
        """Delete segments that every group has committed past (never the newest one)."""
        groups_dir = self.root / "groups"
        if not groups_dir.exists():
            return 0
        groups = [g.name for g in os.scandir(groups_dir) if g.is_dir()]
        if not groups:
            return 0
        removed = 0
        for shard in range(self.shards):
            marks = [self.committed(shard, g) for g in groups]
            if any(m is None for m in marks):
                continue
            low = min(m for m in marks if m is not None)
            segments = self._segments(shard)
            for (_, path), (next_first, _) in itertools.pairwise(segments):
                if next_first - 1 <= low:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def close(self) -> None:
        super().close()
        with self._lock:
            for fd in self._lease_fds.values():
                os.close(fd)
            self._lease_fds.clear()
