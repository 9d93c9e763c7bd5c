"""Fuzzing `graphpack serve`'s HTTP front door over raw sockets.

Hypothesis generates at least ``EXAMPLES`` connections per run: bad request lines, odd and
invalid UTF-8 targets and headers, header floods, random Content-Length / chunked framing,
pipelined requests, fragments sent slowly, and endings that half-close, close or reset. Each
answer must be well-formed HTTP/1.1 without a traceback, and after the run the server must still
answer, with the same worker processes and a log without tracebacks (checked when the module's
server stops).

Every input that ever broke the server is kept in ``http_fuzz_corpus.json`` (bytes as latin-1
text) and replayed first; add a new failing input there with the name of what it broke.
"""
from __future__ import annotations

import json
import random
import re
import socket
import struct
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rawhttp import connect, parse_responses, read_all
from .test_processor import Served, make_function, worker_pids

EXAMPLES = 5000
CORPUS = Path(__file__).with_name("http_fuzz_corpus.json")
#: statuses the front door may answer (500 only from the handler's own "boom" failure)
STATUSES = {100, 200, 400, 413, 417, 431, 500, 501, 505}
ENTRY = '''
import time

def handler(context, event):
    if event.path == "/slow":
        time.sleep(0.05)
    if event.path == "/boom":
        raise ValueError("boom")
    body = event.body
    return {"path": event.path, "method": event.method, "query": event.fields,
            "size": len(body) if isinstance(body, (bytes, str)) else -1}
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Served(make_function(tmp_path_factory.mktemp("fuzz"), workers=2, entry=ENTRY))
    s.workers = sorted(worker_pids(s.proc.pid))
    assert len(s.workers) == 2
    yield s
    assert s.stop() == 0
    for sign in ("Traceback", "Fatal error", "Exception in callback"):  # the server's log stays clean
        assert sign not in s.output, s.output[-3000:]


# -- what a client sends ------------------------------------------------------------------------
# Hypothesis draws each connection's shape (how many requests, their framing, floods, how the
# connection is fed and ended) and a seeded Random that fills in the bytes: a few draws per
# connection keep 5,000 connections within the time budget.
def pick(rnd, *weighted_options):
    """One option from ``(weight, [options...])`` groups: mostly well-formed, sometimes odd."""
    groups = [options for _, options in weighted_options]
    options = rnd.choices(groups, weights=[w for w, _ in weighted_options])[0]
    return options(rnd) if callable(options) else rnd.choice(options)


def junk(size):
    return lambda rnd: rnd.randbytes(rnd.randint(0, size))


METHODS = ((8, [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS"]),
           (1, [b"CONNECT", b"PATCH", b"TRACE", b"PRI", b"get", b"G ET", b""]), (1, junk(10)))
TARGETS = ((6, [b"/", b"/a/b?x=1&z=", b"/v2/models/ir%69s/infer", b"//x//y", b"/x/../y", b"/%2F%2e%2E/", b"/slow",
                b"/boom", b"/q?a=%ff&b=%zz&&=&c"]),
           (1, [b"*", b"http://[::1?a=1", b"http://h:80/p?q#f", b"host:443", b"/%", b"/a#frag", b"/\xff", b"/a b",
                b"", b"/" + b"a" * 70_000]),
           (2, lambda rnd: b"/" + rnd.randbytes(rnd.randint(0, 40))))
VERSIONS = ((8, [b"HTTP/1.1", b"HTTP/1.0"]),
            (1, [b"HTTP/2.0", b"HTTP/1.", b"HTTP/9.9", b"http/1.1", b"HTTP/1.1 x", b""]), (1, junk(10)))
NAMES = ((6, [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Content-Type",
              b"Upgrade", b"content-length", b"X-A"]),
         (1, [b"Content-Length ", b" X", b"", b"X\x00", b"\xff"]), (1, junk(16)))
VALUES = ((6, [b"0", b"3", b"-3", b"-35", b"abc", b"1_0", b"+3", b"0x3", b"99999999999999999999", b"chunked",
               b"gzip, chunked", b"chunked, gzip", b"close", b"keep-alive", b"Upgrade", b"100-continue", b"h2c",
               b"application/json", b"text/plain"]),
          (1, [b"\xff\xfe", b"\xc3\x28", b"a\x00b", b"\x7f", b" 3 ", b""]), (1, junk(24)))
LINE_ENDS = ((12, [b"\r\n"]), (1, [b"\n", b"\r", b"\r\r\n", b" \r\n"]))
CHUNK_SIZES = ((6, [None]), (1, [b"-6", b"zz", b"", b"7FFFFFFF", b"ffffffffffffffffff", b"0x3", b"+1", b" 3"]))
CHUNK_ENDS = ((5, [b"0\r\n\r\n"]), (1, [b"0\r\nX-T: 1\r\n\r\n", b"0\r\n", b"", b"0;x\r\n\r\n", b"00\r\n\r\n"]))
FLOODS = {"none": lambda rnd: b"", "many": lambda rnd: b"X-F: v\r\n" * rnd.randint(1, 12_000),
          "big": lambda rnd: b"X-Big: " + b"a" * rnd.randint(60_000, 70_000) + b"\r\n"}


def chunked_body(rnd) -> bytes:
    out = []
    for _ in range(rnd.randint(0, 4)):
        data = rnd.randbytes(rnd.randint(0, 40))
        size = pick(rnd, *CHUNK_SIZES)
        size = b"%x" % len(data) if size is None else size
        extension = pick(rnd, (6, [b""]), (1, [b";a=b", b";", b"; x", b";\xff"]))
        out.append(size + extension + b"\r\n" + data + pick(rnd, *LINE_ENDS))
    return b"".join(out) + pick(rnd, *CHUNK_ENDS)


def request(rnd, framing: str, flood: str) -> bytes:
    body = pick(rnd, (4, [b""]), (3, junk(64)), (1, lambda r: b"x" * r.randint(900, 1100)))
    headers = [(pick(rnd, *NAMES), pick(rnd, *VALUES)) for _ in range(rnd.randint(0, 6))]
    if framing in ("length", "both"):
        headers.insert(rnd.randint(0, len(headers)), (b"Content-Length", b"%d" % len(body)))
    if framing == "wrong-length":
        headers.insert(rnd.randint(0, len(headers)), (b"Content-Length", b"%d" % rnd.randint(0, 200)))
    if framing in ("chunked", "both"):
        headers.insert(rnd.randint(0, len(headers)), (b"Transfer-Encoding", b"chunked"))
        body = chunked_body(rnd)
    end = pick(rnd, *LINE_ENDS)
    head = pick(rnd, *METHODS) + b" " + pick(rnd, *TARGETS) + b" " + pick(rnd, *VERSIONS) + end
    head += b"".join(name + b": " + value + pick(rnd, *LINE_ENDS) for name, value in headers) + FLOODS[flood](rnd)
    return head + end + body


SEEDS = st.integers(0, 2**32 - 1)
SHAPES = st.lists(st.tuples(st.sampled_from(["length", "length", "none", "chunked", "both", "wrong-length"]),
                            st.sampled_from(["none"] * 20 + ["many", "big"])), min_size=1, max_size=3)
CUT_COUNTS = st.integers(0, 3)
PAUSES = st.sampled_from([0.0] * 8 + [0.002, 0.01])
ENDINGS = st.sampled_from(["half-close"] * 8 + ["reset", "close"])


@st.composite
def conversation(draw):
    rnd = random.Random(draw(SEEDS))  # one drawn seed, then plain random (hypothesis draws are slow)
    prefix = pick(rnd, (8, [b""]), (1, [b"\r\n", b"\r\n\r\n", b"\x16\x03\x01", b"\x00"]))
    data = prefix + b"".join(request(rnd, framing, flood) for framing, flood in draw(SHAPES))
    cuts = sorted(rnd.randint(0, len(data)) for _ in range(draw(CUT_COUNTS)))
    return {"data": data, "cuts": cuts, "pause": draw(PAUSES), "ending": draw(ENDINGS)}


# -- sending it ---------------------------------------------------------------------------------
def play(port: int, data: bytes, cuts=(), pause: float = 0.0, ending: str = "half-close") -> bytes:
    """Send ``data`` (in pieces at ``cuts``), end the connection as ``ending`` says; what came back."""
    with connect(port, timeout=10) as sock:
        start = 0
        try:
            for cut in [*cuts, len(data)]:
                if cut > start:
                    sock.sendall(data[start:cut])
                    start = cut
                    if pause:
                        time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # the server already answered an error and closed
        if ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        if ending == "close":
            return b""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed first (it answered an HTTP/1.0 request, or an error)
            pass
        received, closed = read_all(sock, wait=10)
    assert closed, f"the server kept a half-closed connection open: {data[:200]!r}"
    return received


def check(data: bytes, received: bytes) -> None:
    assert b"Traceback" not in received and b"File \"" not in received, received[:2000]
    if b"HEAD" in data:  # a HEAD answer has no body, which a response parser cannot know
        statuses = [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    else:
        responses = parse_responses(received)
        statuses = [r.status for r in responses]
        for response in responses:
            assert response.status == 100 or (response.header("server") == "graphpack" and response.header("date"))
    assert set(statuses) <= STATUSES, (data[:300], received[:600])
    if 500 in statuses:  # only the handler's own failure (a HEAD answer has no body to show it)
        assert b"/boom" in data and (b"ValueError: boom" in received or b"HEAD" in data), received[:600]


def assert_healthy(server) -> None:
    assert sorted(worker_pids(server.proc.pid)) == server.workers, "a worker died"
    for _ in range(4):  # both workers answer (an idle worker takes the next connection)
        answer = httpx.post(server.url + "/after", json={"ok": 1}, timeout=10)
        assert answer.status_code == 200 and answer.json()["path"] == "/after"


# -- the tests ----------------------------------------------------------------------------------
def corpus_bytes(data) -> bytes:
    """A corpus entry's input: latin-1 text, or a list of [text, times] pieces (for floods)."""
    if isinstance(data, str):
        return data.encode("latin-1")
    return b"".join(text.encode("latin-1") * times for text, times in data)


CORPUS_ENTRIES = json.loads(CORPUS.read_text())


@pytest.mark.parametrize("entry", CORPUS_ENTRIES, ids=[e["name"] for e in CORPUS_ENTRIES])
def test_regression_corpus(server, entry):
    data = corpus_bytes(entry["data"])
    received = play(server.port, data, ending=entry.get("ending", "half-close"))
    check(data, received)
    if "expect" in entry:
        assert received.startswith(b"HTTP/1.1 %d " % entry["expect"]), received[:300]
    assert_healthy(server)


def test_fuzz_front_door(server):
    sent = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(conversation())
    def one(conv):
        sent.append(len(conv["data"]))
        check(conv["data"], play(server.port, conv["data"], conv["cuts"], conv["pause"], conv["ending"]))

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    assert len(sent) >= EXAMPLES
    assert_healthy(server)
    print(f"{len(sent)} connections, {sum(sent) / 1e6:.1f} MB, {elapsed:.0f} s")
