"""The recent records of a graph's error stream, by step: what ``graphpack ui`` shows for a step.

Reading leaves the stream as it was: a file queue is read straight from its segment files (no
consumer group, no checkpoint, so nothing holds back its cleanup); other backends are read as a
consumer group of its own that never commits. Only the newest records matter: a file queue is
read from the start of each shard's newest segment.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from ..errors import GraphpackError
from ..queues import record as wire

KEEP = 50          # records kept per step
BATCH = 5000       # records read per poll at most


class ErrorLog:
    """The newest ``keep`` records of the error stream at ``url``, per step, refreshed by ``poll``."""

    def __init__(self, url: str, keep: int = KEEP) -> None:
        from ..queues import scheme_of

        self.url = url
        self.keep = keep
        self.by_step: dict[str, deque] = {}
        self.error = ""  # why the last poll failed, if it did
        self._reader: _FileReader | _GroupReader = \
            _FileReader(url) if scheme_of(url) == "file" else _GroupReader(url)

    def poll(self) -> int:
        """Read what arrived since the last poll; returns how many records."""
        try:
            datas = self._reader.read(BATCH)
        except (GraphpackError, OSError) as exc:
            self.error = f"cannot read the error stream {self.url!r}: {exc}"
            return 0
        self.error = ""
        for data in datas:
            try:
                rec: Any = wire.decode(data)
            except wire.RecordError:
                continue
            if isinstance(rec, dict):
                step = str(rec.get("step") or "")
                self.by_step.setdefault(step, deque(maxlen=self.keep)).append(rec)
        return len(datas)

    def recent(self, step: str, limit: int = KEEP) -> list[dict]:
        """The newest records of ``step`` (its routes' too: ``router`` includes ``router.iris``),
        newest first."""
        found = [rec for name, recs in self.by_step.items() if name == step or name.startswith(step + ".")
                 for rec in recs]
        found.sort(key=lambda rec: str(rec.get("time") or ""), reverse=True)
        return found[:limit]

    def close(self) -> None:
        self._reader.close()


class _FileReader:
    """Reads a file queue's segments (see queues/file.py) without touching its directory."""

    def __init__(self, url: str) -> None:
        self.root = Path(url[len("file://"):] if url.startswith("file://") else url)
        self.cursors: dict[int, tuple[int, int, int]] = {}  # shard -> (segment first offset, position, next offset)

    def _segments(self, shard: int) -> list[int]:
        try:
            names = os.listdir(self.root / "shards" / str(shard))
        except FileNotFoundError:
            return []
        return sorted(int(n[:-4]) for n in names if n.endswith(".seg"))

    def read(self, limit: int) -> list[bytes]:
        from ..queues.file import _scan

        try:
            shards = int(json.loads((self.root / "meta.json").read_text()).get("shards") or 1)
        except FileNotFoundError:
            return []  # nothing failed yet: the first error creates the queue
        except ValueError as exc:
            raise GraphpackError(f"{self.root / 'meta.json'}: {exc}") from None
        out: list[bytes] = []
        for shard in range(shards):
            segments = self._segments(shard)
            if not segments:
                continue
            first, pos, offset = self.cursors.get(shard) or (segments[-1], 0, segments[-1])
            if first not in segments:  # cleaned up meanwhile: go on from the oldest left
                first, pos, offset = segments[0], 0, segments[0]
            while len(out) < limit:
                with open(self.root / "shards" / str(shard) / f"{first:020d}.seg", "rb") as handle:
                    frames, pos = _scan(handle, pos, offset, limit - len(out))
                out += [data for _, data in frames]
                if frames:
                    offset = frames[-1][0] + 1
                later = [s for s in segments if s > first]
                if frames or not later:
                    break
                first, pos, offset = later[0], 0, later[0]  # this segment is finished: the next one
            self.cursors[shard] = (first, pos, offset)
        return out

    def close(self) -> None:
        pass


class _GroupReader:
    """Reads any other backend as a consumer group of its own that never commits."""

    def __init__(self, url: str) -> None:
        from ..queues import open_queue

        self.queue = open_queue(url)
        self.group = f"graphpack-observe-{uuid.uuid4().hex[:8]}"

    def read(self, limit: int) -> list[bytes]:
        out: list[bytes] = []
        for shard in range(self.queue.shards):
            out += [item.data for item in self.queue.read(shard, self.group, max(limit - len(out), 1))]
        return out

    def close(self) -> None:
        self.queue.close()
