"""``s3://bucket/prefix``: a queue in an S3 bucket, nothing else needed between functions.

Layout under the prefix::

    meta.json                              {"shards": N}
    shards/<s>/<segment no>.seg            immutable segments: b"GPQ1" + (>I length + data)*
    checkpoints/<group>/<s>.json           {"offset": n, "owner": ...}
    leases/<group>/<s>.json                {"owner": ..., "expires": epoch seconds}
    members/<group>/<owner>                heartbeat objects (LastModified)

Producers write through the queue's group commit (:mod:`graphpack.queues.commit`): one segment
object per shard and batch, a batch being every record submitted within ``linger`` seconds (or up
to ``flush_records`` / ``flush_bytes``); a push is acknowledged once its segment's PUT completed. Segment numbers
are gapless per shard: each segment is created with ``If-None-Match: *``, so two producers never
write the same number; a producer that loses the race lists the shard and takes the next number.
Consumers GET segment ``n`` then ``n + 1`` (a 404 means "nothing new yet"). An offset is
``segment << 20 | index``. Checkpoints are written with ``If-Match`` on the ETag the consumer last
saw (``If-None-Match: *`` for the first), so a consumer that lost its shard cannot move the
checkpoint; leases use the same conditional writes. moto's server (5.x) honours both headers on
PutObject and ``If-Match`` on DeleteObject, which the tests rely on.
"""
from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..runtime.deps import require
from .base import LeaseLost, Queue, QueueError, QueueItem, StorageError

MAGIC = b"GPQ1"
LENGTH = struct.Struct(">I")
INDEX_BITS = 20
MAX_SEGMENT_RECORDS = 1 << INDEX_BITS


def _encode_segment(records: list[bytes]) -> bytes:
    parts = [MAGIC]
    for data in records:
        parts.append(LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _decode_segment(blob: bytes) -> list[bytes]:
    if not blob.startswith(MAGIC):
        raise QueueError("S3 queue segment is corrupt (bad header)")
    out, pos, end = [], len(MAGIC), len(blob)
    while pos < end:
        (length,) = LENGTH.unpack_from(blob, pos)
        pos += LENGTH.size
        out.append(blob[pos:pos + length])
        pos += length
    return out


class S3Queue(Queue):
    """Batched segment objects per shard in an S3 bucket (boto3, imported lazily)."""

    scheme = "s3"
    LINGER = 0.02  # a PUT costs more than an fsync: a longer window, bigger segments

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        poll_interval: float = 0.05,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        rest = url.split("://", 1)[1]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise QueueError(f"queue {url!r}: s3:// needs a bucket, e.g. s3://bucket/queues/q1")
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.flush_records = min(self.flush_records, MAX_SEGMENT_RECORDS)
        self.poll_interval = float(poll_interval)
        self.requests = 0  # S3 requests sent by this queue (for benchmarks)
        self._client = client
        self._next_segment: dict[int, int] = {}
        self._segments: dict[int, dict[int, list[bytes]]] = {}
        self._ckpt_etags: dict[tuple[str, int], str | None] = {}
        self._leases: dict[tuple[str, int], tuple[str, float]] = {}  # -> (etag, expires)
        self._heartbeats: dict[str, float] = {}

    # -- client and error translation ------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            boto3 = require("boto3", "boto3", f"S3 queue {self.url!r}")
            Config = require("botocore.config", "boto3", f"S3 queue {self.url!r}").Config
            config = Config(
                connect_timeout=3,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=max(10, self.shards + 4),
            )
            self._client = boto3.session.Session().client(  # a fresh session: credentials read now
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        if not getattr(self._client, "_graphpack_counted", False):
            self._client.meta.events.register("before-send.s3", self._count)
            self._client._graphpack_counted = True
        return self._client

    def _count(self, **_: Any) -> None:
        self.requests += 1

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to: ``endpoint_url=``, else what boto3 resolved
        (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, a profile's, or AWS's own)."""
        if self.endpoint_url:
            return self.endpoint_url
        try:
            return str(self.client.meta.endpoint_url)
        except Exception:  # noqa: BLE001 - naming the endpoint must not fail the error report
            return "the default AWS endpoint"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate boto errors into one-line QueueErrors (ClientErrors not handled pass through)."""
        bexc = require("botocore.exceptions", "boto3", f"S3 queue {self.url!r}")
        try:
            yield
        except bexc.NoCredentialsError:
            raise QueueError(
                f"queue {self.url!r}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "or a profile)"
            ) from None
        except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError,
                bexc.ConnectionClosedError) as exc:
            raise StorageError(f"queue {self.url!r}: cannot reach S3 at {self.endpoint} while {action}: "
                               f"{exc}") from None
        except bexc.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchBucket",):
                raise QueueError(f"queue {self.url!r}: bucket {self.bucket!r} does not exist at "
                                 f"{self.endpoint}") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                raise QueueError(f"queue {self.url!r}: access denied by {self.endpoint} while {action} "
                                 f"({code})") from None
            if status >= 500 or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
                raise StorageError(f"queue {self.url!r}: S3 at {self.endpoint} failed while {action}: "
                                   f"{code or status}") from None
            raise

    @staticmethod
    def _code(exc: BaseException) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def _key(self, *parts: str) -> str:
        return "/".join(([self.prefix] if self.prefix else []) + list(parts))

    def _seg_key(self, shard: int, segment: int) -> str:
        return self._key("shards", str(shard), f"{segment:012d}.seg")

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """(body, etag) or None when the object does not exist."""
        try:
            with self._errors(f"reading {key}"):
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
                return resp["Body"].read(), resp["ETag"]
        except Exception as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    def _put(self, key: str, body: bytes, if_match: str | None = None, create: bool = False) -> str | None:
        """Write; returns the new ETag, or None when the condition failed (412 / 409)."""
        extra: dict[str, Any] = {}
        if create:
            extra["IfNoneMatch"] = "*"
        elif if_match is not None:
            extra["IfMatch"] = if_match
        try:
            with self._errors(f"writing {key}"):
                return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)["ETag"]
        except Exception as exc:
            if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
                return None
            raise

    def _list(self, prefix: str, start_after: str = "") -> list[dict]:
        out: list[dict] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        with self._errors(f"listing {prefix}"):
            while True:
                resp = self.client.list_objects_v2(**kwargs)
                out.extend(resp.get("Contents", []))
                if not resp.get("IsTruncated"):
                    return out
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]

    # -- validation -------------------------------------------------------------------------------
    def check(self) -> None:
        """Bucket reachable with these credentials; records (or verifies) the shard count."""
        try:
            with self._errors("checking the bucket"):
                self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            code = self._code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise QueueError(f"queue {self.url!r}: bucket {self.bucket!r} does not exist") from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise QueueError(f"queue {self.url!r}: access denied to bucket {self.bucket!r}") from None
            raise
        key = self._key("meta.json")
        found = self._get(key)
        if found is None:
            if self._put(key, json.dumps({"shards": self.shards}).encode(), create=True) is not None:
                return
            found = self._get(key)
        stored = json.loads(found[0]).get("shards") if found else self.shards
        if stored != self.shards:
            raise QueueError(f"queue {self.url!r} exists with {stored} shard(s), not {self.shards}")

    # -- producing --------------------------------------------------------------------------------
    def _append(self, by_shard: dict[int, list[bytes]]) -> None:
        """One segment object per shard (more when a batch exceeds ``flush_records``)."""
        for shard, datas in by_shard.items():
            for start in range(0, len(datas), self.flush_records):
                self._write_segment(shard, _encode_segment(datas[start:start + self.flush_records]))

    def _write_segment(self, shard: int, body: bytes) -> None:
        segment = self._next_segment.get(shard)
        if segment is None:
            segment = self._discover_next(shard, "")
        for _ in range(1000):
            if self._put(self._seg_key(shard, segment), body, create=True) is not None:
                self._next_segment[shard] = segment + 1
                return
            segment = self._discover_next(shard, self._seg_key(shard, segment))
        raise QueueError(f"queue {self.url!r}: could not write a segment to shard {shard} (too much contention)")

    def _discover_next(self, shard: int, start_after: str) -> int:
        prefix = self._key("shards", str(shard)) + "/"
        keys = [o["Key"] for o in self._list(prefix, start_after)]
        if keys:
            return int(keys[-1].rsplit("/", 1)[1].split(".")[0]) + 1
        if start_after:
            return int(start_after.rsplit("/", 1)[1].split(".")[0]) + 1
        return 0

    # -- consuming --------------------------------------------------------------------------------
    def _ckpt_key(self, shard: int, group: str) -> str:
        return self._key("checkpoints", group, f"{shard}.json")

    def _read_checkpoint(self, shard: int, group: str) -> int | None:
        found = self._get(self._ckpt_key(shard, group))
        self._ckpt_etags[(group, shard)] = found[1] if found else None
        return None if found is None else int(json.loads(found[0])["offset"])

    def committed(self, shard: int, group: str) -> int | None:
        found = self._get(self._ckpt_key(shard, group))
        return None if found is None else int(json.loads(found[0])["offset"])

    def rewind(self, shard: int, group: str) -> None:
        with self._read_lock:
            self._cursors.pop((group, shard), None)
            self._ckpt_etags.pop((group, shard), None)

    def _start(self, shard: int, group: str) -> tuple[int, int]:
        done = self._read_checkpoint(shard, group)
        if done is not None:
            return done >> INDEX_BITS, (done & (MAX_SEGMENT_RECORDS - 1)) + 1
        first = self._list_first(shard)
        return (first, 0) if first is not None else (0, 0)

    def _list_first(self, shard: int) -> int | None:
        with self._errors("listing segments"):
            resp = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._key("shards", str(shard)) + "/", MaxKeys=1
            )
        contents = resp.get("Contents") or []
        return int(contents[0]["Key"].rsplit("/", 1)[1].split(".")[0]) if contents else None

    def _segment(self, shard: int, segment: int) -> list[bytes] | None:
        cache = self._segments.setdefault(shard, {})
        if segment in cache:
            return cache[segment]
        found = self._get(self._seg_key(shard, segment))
        if found is None:
            return None
        records = _decode_segment(found[0])
        for old in [s for s in cache if s < segment - 1]:
            del cache[old]
        cache[segment] = records
        return records

    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        """Items from the cursor on, across segments, up to ``max_records`` or the newest segment
        (so a consumer commits once per read, not once per segment)."""
        out: list[QueueItem] = []
        with self._read_lock:
            cursor = self._cursors.get((group, shard))
            if cursor is None:
                cursor = self._cursors[(group, shard)] = self._start(shard, group)
            segment, index = cursor
            while len(out) < max_records:
                records = self._segment(shard, segment)
                if records is None:
                    break
                if index >= len(records):
                    if self._segment(shard, segment + 1) is None:
                        break  # nothing newer yet
                    segment, index = segment + 1, 0
                    continue
                chunk = records[index:index + max_records - len(out)]
                base = segment << INDEX_BITS
                out.extend(QueueItem(shard, base + index + i, data) for i, data in enumerate(chunk))
                index += len(chunk)
            self._cursors[(group, shard)] = (segment, index)
        return out

    def _poll_interval(self) -> float:
        return self.poll_interval

    def _commit(self, shard: int, group: str, offset: int) -> None:
        key = (group, shard)
        if key not in self._ckpt_etags:
            self._read_checkpoint(shard, group)
        etag = self._ckpt_etags.get(key)
        body = json.dumps({"offset": offset}).encode()
        new = self._put(self._ckpt_key(shard, group), body, if_match=etag, create=etag is None)
        if new is None:
            self._ckpt_etags.pop(key, None)
            raise LeaseLost(f"queue {self.url!r}: shard {shard} of group {group!r} was committed by another consumer")
        self._ckpt_etags[key] = new

    # -- membership and leases --------------------------------------------------------------------
    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        now = time.time()
        prefix = self._key("members", group) + "/"
        if now - self._heartbeats.get(group, 0.0) >= ttl / 3:
            self._put(prefix + owner, b"{}")
            self._heartbeats[group] = now
        live = []
        for obj in self._list(prefix):
            name = obj["Key"][len(prefix):]
            age = now - obj["LastModified"].timestamp()
            if age <= ttl or name == owner:
                live.append(name)
            elif age > 10 * ttl:
                self._delete(obj["Key"])
        return sorted(live)

    def leave(self, group: str, owner: str) -> None:
        self._heartbeats.pop(group, None)
        self._delete(self._key("members", group, owner))

    def _delete(self, key: str, if_match: str | None = None) -> None:
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            with self._errors(f"deleting {key}"):
                self.client.delete_object(Bucket=self.bucket, Key=key, **extra)
        except Exception as exc:
            if self._code(exc) not in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise

    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        now = time.time()
        key = self._key("leases", group, f"{shard}.json")
        body = json.dumps({"owner": owner, "expires": now + ttl}).encode()
        held = self._leases.get((group, shard))
        if held is not None:
            etag, expires = held
            if expires - now > ttl / 2:
                return True
            new = self._put(key, body, if_match=etag)
            if new is None:
                del self._leases[(group, shard)]
                return False
            self._leases[(group, shard)] = (new, now + ttl)
            return True
        found = self._get(key)
        if found is None:
            new = self._put(key, body, create=True)
        else:
            lease = json.loads(found[0])
            if lease.get("owner") != owner and float(lease.get("expires", 0)) > now:
                return False
            new = self._put(key, body, if_match=found[1])
        if new is None:
            return False
        self._leases[(group, shard)] = (new, now + ttl)
        return True

    def release(self, shard: int, group: str, owner: str) -> None:
        held = self._leases.pop((group, shard), None)
        if held is not None:
            self._delete(self._key("leases", group, f"{shard}.json"), if_match=held[0])

    # -- retention and lifecycle ------------------------------------------------------------------
    def cleanup(self) -> int:
        """Delete segments every group with a checkpoint has moved past (never the newest)."""
        ckpt_prefix = self._key("checkpoints") + "/"
        marks: dict[int, list[int]] = {}
        groups: set[str] = set()
        for obj in self._list(ckpt_prefix):
            group, name = obj["Key"][len(ckpt_prefix):].split("/", 1)
            groups.add(group)
            found = self._get(obj["Key"])
            if found is not None:
                marks.setdefault(int(name.split(".")[0]), []).append(int(json.loads(found[0])["offset"]))
        removed = 0
        for shard in range(self.shards):
            if len(marks.get(shard, [])) < len(groups) or not groups:
                continue
            low_segment = min(marks[shard]) >> INDEX_BITS
            keys = [o["Key"] for o in self._list(self._key("shards", str(shard)) + "/")]
            for key in keys[:-1]:
                if int(key.rsplit("/", 1)[1].split(".")[0]) < low_segment:
                    self._delete(key)
                    removed += 1
        return removed

    def _dead_letter_options(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "region": self.region, "client": self._client}
