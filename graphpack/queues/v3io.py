"""v3io streams through the v3io web API (httpx, imported lazily).

URLs as MLRun writes them: ``v3io:///<container>/<path>`` (the web API endpoint from ``V3IO_API``),
``v3io://<host:port>/<container>/<path>`` (an explicit endpoint; ``v3ios://`` for https), and
graphpack's short form ``v3io://<container>/<path>`` (a first part with no port and no dot is a
container, not a host). See :func:`parse_v3io_url`.

The endpoint comes from ``endpoint=``, the URL or ``V3IO_API``, the access key from ``access_key=`` or
``V3IO_ACCESS_KEY``. ``check()`` creates the stream with ``shards`` (and ``retention_in_hours``, default 24) when it
does not exist, or verifies its shard count. Offsets are the stream's sequence numbers.
Checkpoints use the format Nuclio's ``v3ioStream`` trigger and v3io-go use, so a child deployed
with that trigger continues where a graphpack consumer stopped, and vice versa: the attribute
``__<group>_committed_sequence_number`` on the shard object (last processed sequence number).
Group membership and shard ownership live in ``<stream>/<group>-state.json`` (attribute ``state``),
written with mtime conditions as v3io-go does.
"""
from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ..runtime.deps import require
from .base import Queue, QueueError, QueueItem, StorageError

MAX_RECORDS_PER_PUT = 1000
MAX_PUT_BYTES = 8 * 1024 * 1024  # below the documented 10 MB body limit, leaving room for base64 JSON
FALSE_CONDITION = "16777244"
DEFAULT_WEBAPI = "http://v3io-webapi:8081"


def parse_v3io_url(url: str) -> tuple[str | None, str, str]:
    """``(endpoint or None, container, path)`` of a ``v3io://`` / ``v3ios://`` URL."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("v3io", "v3ios"):
        raise QueueError(f"{url!r} is not a v3io URL (v3io:///<container>/<path> or v3io://<host:port>/...)")
    netloc, _, tail = rest.partition("/")
    is_host = scheme == "v3ios" or ":" in netloc or "." in netloc or netloc == "localhost"
    endpoint = None
    if netloc and is_host:
        endpoint = f"{'https' if scheme == 'v3ios' else 'http'}://{netloc}"
    if netloc and not is_host:
        container, path = netloc, tail
    else:
        container, _, path = tail.partition("/")
    return endpoint, container, path.strip("/")


class V3ioQueue(Queue):
    """A v3io stream; shards are the stream's shards."""

    scheme = "v3io"

    def __init__(
        self,
        url: str,
        endpoint: str | None = None,
        access_key: str | None = None,
        poll_interval: float = 0.25,
        timeout: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        url_endpoint, self.container, self.path = parse_v3io_url(url)
        if not self.container or not self.path:
            raise QueueError(f"queue {url!r}: use v3io:///<container>/<stream path> (or v3io://<container>/<stream path>)")
        self.endpoint = endpoint or url_endpoint or os.environ.get("V3IO_API", "")
        if self.endpoint and "://" not in self.endpoint:
            self.endpoint = "http://" + self.endpoint
        self.access_key = access_key if access_key is not None else os.environ.get("V3IO_ACCESS_KEY")
        self.retention_hours = int(self.retention_in_hours or 24)
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self._http: Any = None
        self._ready = False
        self._sessions: dict[str, float] = {}

    # -- transport --------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._http is None:
            if not self.endpoint:
                raise QueueError(f"queue {self.url!r}: no v3io endpoint (pass endpoint= or set V3IO_API)")
            httpx = require("httpx", "httpx", f"v3io queue {self.url!r}")
            headers = {"Content-Type": "application/json"}
            if self.access_key:
                headers["X-v3io-session-key"] = self.access_key
            self._http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=self.timeout)
        return self._http

    def _url(self, *parts: str) -> str:
        return "/" + quote("/".join([self.container, self.path, *parts]))

    def _call(self, function: str, body: dict | None, *parts: str, ok: tuple[int, ...] = (200, 204)) -> tuple[int, Any]:
        """One web API call; returns (status, JSON or None). Errors other than ``ok`` raise QueueError."""
        import httpx

        client = self._client()
        for attempt in range(4):
            try:
                resp = client.request(
                    "PUT", self._url(*parts), headers={"X-v3io-function": function},
                    content=json.dumps(body).encode() if body is not None else b"",
                )
            except httpx.TransportError as exc:
                if attempt < 3:
                    time.sleep(0.1 * 4 ** attempt)
                    continue
                raise StorageError(f"queue {self.url!r}: cannot reach v3io at {self.endpoint}: {exc}") from None
            if resp.status_code == 503 and attempt < 3:  # overload: retried, as v3io-go does
                time.sleep(0.05 * 4 ** attempt)
                continue
            break
        payload = None
        if resp.content:
            try:
                payload = resp.json()
            except ValueError:
                payload = {"ErrorMessage": resp.text[:200]}
        if resp.status_code in ok:
            return resp.status_code, payload
        if resp.status_code in (401, 403):
            raise QueueError(f"queue {self.url!r}: v3io refused the access key ({resp.status_code})")
        message = (payload or {}).get("ErrorMessage", "") if isinstance(payload, dict) else ""
        raise _V3ioError(resp.status_code, str(message), resp.text, f"queue {self.url!r}: v3io {function} failed "
                         f"({resp.status_code} {message})")

    # -- setup ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Reach the endpoint, create the stream if missing, verify the shard count."""
        status, described = self._call("DescribeStream", None, ok=(200, 404))
        if status == 404:
            body = {"ShardCount": self.shards, "RetentionPeriodHours": self.retention_hours}
            try:
                self._call("CreateStream", body, ok=(200, 204, 409))
            except _V3ioError as exc:
                if "ResourceInUse" not in exc.text:
                    raise
            status, described = self._call("DescribeStream", None)
        stored = described.get("ShardCount")
        if stored != self.shards:
            raise QueueError(f"queue {self.url!r} exists with {stored} shard(s), not {self.shards}")
        self._ready = True

    def _ensure(self) -> None:
        if not self._ready:
            self.check()

    # -- producing --------------------------------------------------------------------------------
    def _append(self, by_shard: dict[int, list[bytes]]) -> None:
        self._ensure()
        pending = [{"Data": base64.b64encode(d).decode(), "ShardId": s} for s, ds in by_shard.items() for d in ds]
        for attempt in range(5):
            failed: list[dict] = []
            for chunk in _chunks(pending):
                _, result = self._call("PutRecords", {"Records": chunk})
                if result.get("FailedRecordCount"):
                    failed += [rec for rec, res in zip(chunk, result["Records"]) if res.get("ErrorCode")]
            if not failed:
                return
            pending = failed
            time.sleep(0.05 * 2 ** attempt)
        raise QueueError(f"queue {self.url!r}: {len(pending)} record(s) were refused by v3io")

    # -- consuming --------------------------------------------------------------------------------
    def _attr(self, group: str) -> str:
        return f"__{group}_committed_sequence_number"

    def _seek(self, shard: int, group: str) -> str | None:
        """The location after the group's checkpoint (or the earliest record); None: no shard yet."""
        done = self.committed(shard, group)
        body: dict[str, Any] = {"Type": "EARLIEST"} if done is None else {
            "Type": "SEQUENCE", "StartingSequenceNumber": done + 1}
        status, result = self._call("SeekShard", body, str(shard), ok=(200, 404, 400))
        if status != 200:
            if "ResourceNotFound" in json.dumps(result) or status == 404:
                return None
            raise QueueError(f"queue {self.url!r}: cannot seek shard {shard}: {result}")
        return result["Location"]

    def _read(self, shard: int, group: str, max_records: int) -> list[QueueItem]:
        self._ensure()
        with self._read_lock:
            location = self._cursors.get((group, shard))
            if location is None:
                location = self._seek(shard, group)
                if location is None:
                    return []
            status, result = self._call(
                "GetRecords", {"Location": location, "Limit": max_records}, str(shard), ok=(200, 400)
            )
            if status == 400:
                if "IllegalLocation" in json.dumps(result):
                    self._cursors.pop((group, shard), None)  # re-seek from the checkpoint next time
                    return []
                raise QueueError(f"queue {self.url!r}: GetRecords failed on shard {shard}: {result}")
            self._cursors[(group, shard)] = result["NextLocation"]
        return [
            QueueItem(shard, int(rec["SequenceNumber"]), base64.b64decode(rec["Data"]))
            for rec in result.get("Records") or []
        ]

    def _poll_interval(self) -> float:
        return self.poll_interval

    def _commit(self, shard: int, group: str, offset: int) -> None:
        body = {
            "UpdateMode": "CreateOrReplaceAttributes",
            "Item": {self._attr(group): {"N": str(offset)}},
            "ConditionExpression": "__obj_type == 3",
        }
        self._call("PutItem", body, str(shard))

    def committed(self, shard: int, group: str) -> int | None:
        attr = self._attr(group)
        status, result = self._call("GetItem", {"AttributesToGet": attr}, str(shard), ok=(200, 404))
        if status == 404:
            return None
        value = (result or {}).get("Item", {}).get(attr)
        return None if value is None else int(value["N"])

    # -- membership and leases (v3io-go's <group>-state.json) -------------------------------------
    def _update_state(self, group: str, change: Any) -> Any:
        """Read-modify-write the group's state with mtime conditions; ``change(sessions)`` -> result."""
        name = f"{group}-state.json"
        for attempt in range(50):
            status, result = self._call(
                "GetItem", {"AttributesToGet": "__mtime_nsecs,__mtime_secs,state"}, name, ok=(200, 404)
            )
            if status == 404:
                sessions: list[dict] = []
                condition = "not(exists(state))"
            else:
                item = result.get("Item", {})
                sessions = json.loads(item.get("state", {}).get("S") or "{}").get("session_states") or []
                condition = (f"(__mtime_nsecs == {item['__mtime_nsecs']['N']}) AND "
                             f"(__mtime_secs == {item['__mtime_secs']['N']})")
            outcome = change(sessions)
            state = {"schema_version": "0.0.1", "session_states": sessions}
            body = {"UpdateMode": "CreateOrReplaceAttributes", "Item": {"state": {"S": json.dumps(state)}},
                    "ConditionExpression": condition}
            try:
                self._call("PutItem", body, name)
                return outcome
            except _V3ioError as exc:
                if FALSE_CONDITION not in exc.text:
                    raise
                time.sleep(min(0.05 * 2 ** attempt, 0.5))
        raise QueueError(f"queue {self.url!r}: group {group!r} state is too contended")

    @staticmethod
    def _alive(session: dict, ttl: float, now: float) -> bool:
        try:
            beat = datetime.fromisoformat(session["last_heartbeat_time"]).timestamp()
        except (KeyError, ValueError):
            return False
        return now - beat <= ttl

    def _touch(self, sessions: list[dict], owner: str, ttl: float) -> dict:
        now = time.time()
        sessions[:] = [s for s in sessions if s.get("member_id") == owner or self._alive(s, ttl, now)]
        mine = next((s for s in sessions if s.get("member_id") == owner), None)
        if mine is None:
            mine = {"member_id": owner, "shards": []}
            sessions.append(mine)
        mine["last_heartbeat_time"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._sessions[owner] = ttl
        return mine

    def members(self, group: str, owner: str, ttl: float) -> list[str]:
        self._ensure()

        def change(sessions: list[dict]) -> list[str]:
            self._touch(sessions, owner, ttl)
            return sorted(s["member_id"] for s in sessions)

        return self._update_state(group, change)

    def leave(self, group: str, owner: str) -> None:
        self._update_state(group, lambda sessions: sessions.__setitem__(
            slice(None), [s for s in sessions if s.get("member_id") != owner]))

    def acquire(self, shard: int, group: str, owner: str, ttl: float) -> bool:
        self._ensure()

        def change(sessions: list[dict]) -> bool:
            mine = self._touch(sessions, owner, ttl)
            if any(shard in s.get("shards", []) for s in sessions if s is not mine):
                return False
            if shard not in mine["shards"]:
                mine["shards"] = sorted(mine["shards"] + [shard])
            return True

        return self._update_state(group, change)

    def release(self, shard: int, group: str, owner: str) -> None:
        def change(sessions: list[dict]) -> None:
            for s in sessions:
                if s.get("member_id") == owner and shard in s.get("shards", []):
                    s["shards"] = [x for x in s["shards"] if x != shard]

        self._update_state(group, change)

    # -- packaging ------------------------------------------------------------------------------------
    def nuclio_trigger(self, group: str, seek_to: str = "earliest", batch_size: int = 64, **attributes: Any) -> dict:
        """The Nuclio ``v3ioStream`` trigger that consumes this stream as ``group``.

        Same stream, same checkpoint attribute as :class:`V3ioQueue`. The access key is not written
        into the config: ``password: $generate`` makes Nuclio read ``V3IO_ACCESS_KEY`` at run time.
        """
        if seek_to not in ("earliest", "latest"):
            raise QueueError(f"seekTo must be 'earliest' or 'latest', not {seek_to!r}")
        return {
            "kind": "v3ioStream",
            "url": self.endpoint or DEFAULT_WEBAPI,
            "password": "$generate",
            "attributes": {
                "containerName": self.container,
                "streamPath": self.path,
                "consumerGroup": group,
                "seekTo": seek_to,
                "readBatchSize": batch_size,
                **attributes,
            },
        }

    # -- lifecycle --------------------------------------------------------------------------------
    def _dead_letter_options(self) -> dict:
        return {"endpoint": self.endpoint, "access_key": self.access_key, "poll_interval": self.poll_interval}

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._http is not None:
            self._http.close()


class _V3ioError(QueueError):
    def __init__(self, status: int, code: str, text: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.text = status, code, text


def _chunks(records: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    current: list[dict] = []
    size = 0
    for rec in records:
        n = len(rec["Data"]) + 64
        if current and (len(current) >= MAX_RECORDS_PER_PUT or size + n > MAX_PUT_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(rec)
        size += n
    if current:
        out.append(current)
    return out
