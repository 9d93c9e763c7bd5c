"""A small local fake of the v3io web API for streams and the KV calls consumer groups use.

It follows /work/shared/reference/v3io-streams.md §4: functions chosen by ``X-v3io-function``, POST and
PUT alike, base64 ``Data``/``Location``, lazily created shards, sequence numbers from 1, typed KV
attributes with ``N`` values as strings, ``ConditionExpression`` (``exists``, ``not(exists)``, ``==``,
``AND``), the ``X-v3io-transaction-verifier`` header, and the documented error bodies. ``serve()``
runs it on 127.0.0.1 in a thread. Where the reference marks a behaviour as an inference, so does the
comment here. Optional: ``access_key`` (require it; a wrong or missing key gets 401, inferred),
``fail_next`` (a count of 503 answers to inject).
"""
from __future__ import annotations

import base64
import json
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LOCATION = struct.Struct(">BxxxIQ")  # version, shard id, sequence number: 16 bytes
FALSE_CONDITION = 16777244
SHARD_OUT_OF_RANGE = -201326594
INVALID_ARGUMENT = -201326592
MAX_PUT_RECORDS = 1000


@dataclass
class Shard:
    records: list[tuple[int, int, int, bytes, bytes | None, str | None]] = field(default_factory=list)
    next_seq: int = 1
    exists: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stream:
    shard_count: int
    retention_hours: int
    shards: list[Shard]
    round_robin: int = 0


class FakeV3io:
    """The state behind the fake: streams and KV items keyed by (container, path)."""

    def __init__(self, access_key: str | None = None) -> None:
        self.lock = threading.Lock()
        self.streams: dict[tuple[str, str], Stream] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.access_key = access_key
        self.fail_next = 0
        self.calls: list[str] = []

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _mtime(attrs: dict[str, Any]) -> None:
        now = time.time_ns()
        secs, nsecs = divmod(now, 1_000_000_000)
        if attrs.get("__mtime_secs") == secs and attrs.get("__mtime_nsecs", -1) >= nsecs:
            nsecs = attrs["__mtime_nsecs"] + 1
        attrs["__mtime_secs"], attrs["__mtime_nsecs"] = secs, nsecs

    def _locate(self, container: str, path: str) -> tuple[Stream | None, int | None]:
        """(stream, shard id) for a stream path or a ``<stream>/<digits>`` shard path."""
        stream = self.streams.get((container, path))
        if stream is not None:
            return stream, None
        parent, _, last = path.rpartition("/")
        if last.isdigit() and (container, parent) in self.streams:
            return self.streams[(container, parent)], int(last)
        return None, None

    # -- request dispatch -------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any]:
        """Returns (status, extra headers, JSON body or None)."""
        split = urlsplit(raw_path)
        path = unquote(split.path).lstrip("/")
        container, _, rest = path.partition("/")
        rest = rest.strip("/")
        function = headers.get("x-v3io-function", "")
        with self.lock:
            self.calls.append(function or method)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {}, {"ErrorCode": -1, "ErrorMessage": "ServiceUnavailable"}
        if self.access_key is not None:
            given = headers.get("x-v3io-session-key")
            if given != self.access_key:  # (inference) status for a bad key is not documented
                return 401, {}, {"ErrorCode": -1, "ErrorMessage": "Unauthorized"}
        if method == "HEAD":
            with self.lock:
                found = self._locate(container, rest)[0] is not None or (container, rest) in self.items
            return (200 if found else 404), {}, None
        if method == "DELETE":
            return self._delete(container, rest)
        if method not in ("POST", "PUT"):
            return 405, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        try:
            request = json.loads(body) if body.strip() else {}
        except ValueError:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        handler = {
            "CreateStream": self.create_stream,
            "DescribeStream": self.describe_stream,
            "UpdateStream": self.update_stream,
            "PutRecords": self.put_records,
            "Seek": self.seek,
            "SeekShard": self.seek,
            "GetRecords": self.get_records,
            "GetItem": self.get_item,
            "PutItem": self.put_item,
            "UpdateItem": self.put_item,
        }.get(function)
        if handler is None:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        with self.lock:
            return handler(container, rest, request)

    # -- streams ----------------------------------------------------------------------------------
    def create_stream(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        if (container, path) in self.streams:
            return 409, {}, {"ErrorCode": -1, "ErrorMessage": "ResourceInUseException"}
        count = req.get("ShardCount", 1)
        if not isinstance(count, int) or count < 1:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        retention = req.get("RetentionPeriodHours") or 24
        self.streams[(container, path)] = Stream(count, retention, [Shard() for _ in range(count)])
        return 204, {}, None

    def _stream(self, container: str, path: str) -> Stream | None:
        return self.streams.get((container, path))

    def describe_stream(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        stream = self._stream(container, path)
        if stream is None:
            return 404, {}, {"ErrorCode": -2, "ErrorMessage": "ResourceNotFoundException"}
        return 200, {}, {"ShardCount": stream.shard_count, "RetentionPeriodHours": stream.retention_hours}

    def update_stream(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        stream = self._stream(container, path)
        if stream is None:
            return 404, {}, {"ErrorCode": -2, "ErrorMessage": "ResourceNotFoundException"}
        count = req.get("ShardCount")
        if not isinstance(count, int) or count <= stream.shard_count:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidShardCountException"}
        stream.shards += [Shard() for _ in range(count - stream.shard_count)]
        stream.shard_count = count
        return 204, {}, None

    def put_records(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        stream = self._stream(container, path)
        if stream is None:
            return 404, {}, {"ErrorCode": -2, "ErrorMessage": "ResourceNotFoundException"}
        records = req.get("Records") or []
        if len(records) > MAX_PUT_RECORDS:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        results, failed = [], 0
        secs, nsecs = divmod(time.time_ns(), 1_000_000_000)
        for rec in records:
            if rec.get("ShardId") is not None:
                shard_id = rec["ShardId"]
            elif rec.get("PartitionKey") is not None:
                shard_id = zlib.crc32(str(rec["PartitionKey"]).encode()) % stream.shard_count
            else:
                shard_id = stream.round_robin % stream.shard_count
                stream.round_robin += 1
            if not isinstance(shard_id, int) or not 0 <= shard_id < stream.shard_count:
                failed += 1
                results.append({"ErrorCode": SHARD_OUT_OF_RANGE, "ErrorMessage": "ShardIDOutOfRangeException"})
                continue
            try:
                data = base64.b64decode(rec.get("Data", ""), validate=True)
                info = base64.b64decode(rec["ClientInfo"], validate=True) if rec.get("ClientInfo") else None
            except ValueError:
                failed += 1
                results.append({"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"})
                continue
            shard = stream.shards[shard_id]
            seq = shard.next_seq
            shard.next_seq += 1
            shard.exists = True
            shard.records.append((seq, secs, nsecs, data, info, rec.get("PartitionKey")))
            self._mtime(shard.attrs)
            results.append({"SequenceNumber": seq, "ShardId": shard_id})
        return 200, {}, {"FailedRecordCount": failed, "Records": results}

    def _shard(self, container: str, path: str, req: dict) -> tuple[Stream | None, int | None, tuple | None]:
        stream, shard_id = self._locate(container, path)
        if stream is not None and shard_id is None and req.get("ShardId") is not None:
            shard_id = req["ShardId"]
        if stream is None or shard_id is None:
            return None, None, (404, {}, {"ErrorCode": -2, "ErrorMessage": "ResourceNotFoundException"})
        if shard_id >= stream.shard_count:
            return None, None, (400, {}, {"ErrorCode": SHARD_OUT_OF_RANGE, "ErrorMessage": "ShardIDOutOfRangeException"})
        return stream, shard_id, None

    def seek(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        stream, shard_id, error = self._shard(container, path, req)
        if error:
            return error
        shard = stream.shards[shard_id]
        if not shard.exists:
            return 404, {}, {"ErrorCode": -2, "ErrorMessage": "ResourceNotFoundException"}
        first = shard.records[0][0] if shard.records else shard.next_seq
        kind = req.get("Type")
        if kind == "EARLIEST":
            seq = first
        elif kind == "LATEST":
            seq = shard.next_seq
        elif kind == "TIME":
            ts = int(req.get("TimestampSec", 0)) * 1_000_000_000 + int(req.get("TimestampNSec", 0))
            seq = next((r[0] for r in shard.records if r[1] * 1_000_000_000 + r[2] >= ts), shard.next_seq)
        elif kind == "SEQUENCE":
            seq = int(req.get("StartingSequenceNumber", -1))
            if not first <= seq <= shard.next_seq:  # "last + 1" must work (reference §3.3)
                return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        else:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        return 200, {}, {"Location": base64.b64encode(LOCATION.pack(1, shard_id, seq)).decode()}

    def get_records(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        stream, shard_id, error = self._shard(container, path, req)
        if error:
            return error
        shard = stream.shards[shard_id]
        try:
            version, loc_shard, seq = LOCATION.unpack(base64.b64decode(req.get("Location", ""), validate=True))
        except (ValueError, struct.error):
            version, loc_shard, seq = 0, -1, 0
        first = shard.records[0][0] if shard.records else shard.next_seq
        if version != 1 or loc_shard != shard_id or seq < first or seq > shard.next_seq:
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "IllegalLocationException"}
        limit = req.get("Limit") or 1000
        out, total = [], 0
        for rec in shard.records[seq - first:]:
            if len(out) >= limit or total + len(rec[3]) > 10 * 1024 * 1024:
                break
            entry = {
                "ArrivalTimeSec": rec[1],
                "ArrivalTimeNSec": rec[2],
                "SequenceNumber": rec[0],
                "Data": base64.b64encode(rec[3]).decode(),
            }
            if rec[4] is not None:
                entry["ClientInfo"] = base64.b64encode(rec[4]).decode()
            if rec[5] is not None:
                entry["PartitionKey"] = rec[5]
            out.append(entry)
            total += len(rec[3])
        last = out[-1]["SequenceNumber"] if out else seq - 1
        next_seq = last + 1
        behind_ms = 0
        if shard.records and out:
            tail = shard.records[-1]
            behind_ms = max(0, ((tail[1] - out[-1]["ArrivalTimeSec"]) * 1000)
                            + (tail[2] - out[-1]["ArrivalTimeNSec"]) // 1_000_000)
        return 200, {}, {
            "NextLocation": base64.b64encode(LOCATION.pack(1, shard_id, next_seq)).decode(),
            "MSecBehindLatest": behind_ms,
            "RecordsBehindLatest": (shard.next_seq - 1) - last,
            "Records": out,
        }

    # -- KV items ---------------------------------------------------------------------------------
    def _item(self, container: str, path: str) -> tuple[dict | None, bool]:
        """(attributes, is_shard) of an item, or (None, ...) when it does not exist."""
        stream, shard_id = self._locate(container, path)
        if stream is not None and shard_id is not None and shard_id < stream.shard_count:
            shard = stream.shards[shard_id]
            if not shard.exists:
                return None, True
            attrs = dict(shard.attrs)
            attrs["__last_sequence_num"] = shard.next_seq - 1
            attrs["__obj_type"] = 3
            return attrs, True
        return self.items.get((container, path)), False

    @staticmethod
    def _typed(value: Any) -> dict:
        if isinstance(value, bool):
            return {"BOOL": value}
        if isinstance(value, (int, float)):
            return {"N": str(value)}
        if isinstance(value, bytes):
            return {"B": base64.b64encode(value).decode()}
        return {"S": str(value)}

    @staticmethod
    def _untyped(value: dict) -> Any:
        if "N" in value:
            text = str(value["N"])
            return float(text) if "." in text else int(text)
        if "S" in value:
            return value["S"]
        if "B" in value:
            return base64.b64decode(value["B"])
        if "BOOL" in value:
            return bool(value["BOOL"])
        raise ValueError(f"unsupported attribute {value}")

    def _verifier(self, attrs: dict) -> dict:
        return {"X-v3io-transaction-verifier":
                f"__mtime_secs=={attrs.get('__mtime_secs', 0)} and __mtime_nsecs=={attrs.get('__mtime_nsecs', 0)}"}

    def get_item(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        attrs, _ = self._item(container, path)
        if attrs is None:
            return 404, {}, {"ErrorCode": -2, "ErrorMessage": "No such file or directory"}
        wanted = req.get("AttributesToGet", "*")
        names = list(attrs) if wanted in ("*", "**", "") else [n.strip() for n in wanted.split(",")]
        item = {n: self._typed(attrs[n]) for n in names if n in attrs}
        return 200, self._verifier(attrs), {"Item": item}

    def put_item(self, container: str, path: str, req: dict) -> tuple[int, dict, Any]:
        attrs, is_shard = self._item(container, path)
        condition = req.get("ConditionExpression")
        if condition and not evaluate(condition, attrs or {}):
            return 400, {}, {"ErrorCode": FALSE_CONDITION, "ErrorMessage": "condition evaluated to false"}
        try:
            new = {k: self._untyped(v) for k, v in (req.get("Item") or {}).items()}
        except (ValueError, TypeError):
            return 400, {}, {"ErrorCode": INVALID_ARGUMENT, "ErrorMessage": "InvalidArgumentException"}
        if is_shard:
            stream, shard_id = self._locate(container, path)
            shard = stream.shards[shard_id]
            if not shard.exists:  # a shard object only exists after its first record
                return 400, {}, {"ErrorCode": FALSE_CONDITION, "ErrorMessage": "condition evaluated to false"}
            shard.attrs.update(new)
            self._mtime(shard.attrs)
            return 200, self._verifier(shard.attrs), None
        merge = req.get("UpdateMode") == "CreateOrReplaceAttributes"
        target = dict(attrs or {}) if merge else {}
        target.update(new)
        self._mtime(target)
        self.items[(container, path)] = target
        return 200, self._verifier(target), None

    def _delete(self, container: str, path: str) -> tuple[int, dict, Any]:
        with self.lock:
            if (container, path) in self.streams:
                del self.streams[(container, path)]
                for key in [k for k in self.items if k[0] == container and k[1].startswith(path + "/")]:
                    del self.items[key]
                return 204, {}, None
            if self.items.pop((container, path), None) is not None:
                return 204, {}, None
        return 404, {}, {"ErrorCode": -2, "ErrorMessage": "No such file or directory"}


_CLAUSE_EXISTS = re.compile(r"^exists\s*\(\s*([\w.\-]+)\s*\)$", re.IGNORECASE)
_CLAUSE_NOT = re.compile(r"^not\s*\((.*)\)$", re.IGNORECASE)
_CLAUSE_EQ = re.compile(r"^([\w.\-]+)\s*==\s*(.+)$")


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def evaluate(expression: str, attrs: dict[str, Any]) -> bool:
    """Evaluate the subset of v3io condition expressions consumer groups use."""
    clauses = re.split(r"\s+AND\s+", expression.strip(), flags=re.IGNORECASE)
    for clause in clauses:
        clause = _strip_parens(clause)
        if m := _CLAUSE_NOT.match(clause):
            if evaluate(m.group(1), attrs):
                return False
        elif m := _CLAUSE_EXISTS.match(clause):
            if m.group(1) not in attrs:
                return False
        elif m := _CLAUSE_EQ.match(clause):
            name, raw = m.group(1), m.group(2).strip()
            value: Any = raw[1:-1] if raw[:1] in "'\"" else (float(raw) if "." in raw else int(raw))
            if name not in attrs or attrs[name] != value:
                return False
        else:
            raise ValueError(f"unsupported condition {clause!r}")
    return True


class _Handler(BaseHTTPRequestHandler):
    fake: FakeV3io
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, extra, payload = self.fake.handle(self.command, self.path, headers, body)
        except Exception as exc:  # noqa: BLE001 - a fake bug must show up in the test, not hang it
            status, extra, payload = 500, {}, {"ErrorCode": -1, "ErrorMessage": repr(exc)}
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    do_POST = do_PUT = do_GET = do_HEAD = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed consumer) is normal here; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def serve(fake: FakeV3io | None = None) -> Iterator[str]:
    """Run the fake on 127.0.0.1 (a free port) in a thread; yields its URL (``.fake`` on the server)."""
    fake = fake or FakeV3io()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


if __name__ == "__main__":  # pragma: no cover - manual use: python -m tests.queues.v3io_fake
    with serve() as url:
        print(url, flush=True)
        threading.Event().wait()
