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
def weighted(*pairs):
    """One of the strategies, chosen with the given weights."""
    choices = [strategy for weight, strategy in pairs for _ in range(weight)]
    return st.sampled_from(range(len(choices))).flatmap(lambda i: choices[i])


CRLF = weighted((12, st.just(b"\r\n")), (1, st.sampled_from([b"\n", b"\r", b"\r\r\n", b" \r\n"])))
METHODS = weighted((8, st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS"])),
                   (1, st.sampled_from([b"CONNECT", b"PATCH", b"TRACE", b"PRI", b"get", b"G ET", b""])),
                   (1, st.binary(min_size=1, max_size=10)))
TARGETS = weighted((6, st.sampled_from([b"/", b"/a/b?x=1&z=", b"/v2/models/ir%69s/infer", b"//x//y", b"/x/../y",
                                        b"/%2F%2e%2E/", b"/slow", b"/boom", b"/q?a=%ff&b=%zz&&=&c"])),
                   (1, st.sampled_from([b"*", b"http://[::1?a=1", b"http://h:80/p?q#f", b"host:443", b"/%",
                                        b"/a#frag", b"/\xff", b"/a b", b"", b"/" + b"a" * 70_000])),
                   (2, st.binary(max_size=40).map(lambda b: b"/" + b)))
VERSIONS = weighted((8, st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])),
                    (1, st.sampled_from([b"HTTP/2.0", b"HTTP/1.", b"HTTP/9.9", b"http/1.1", b"HTTP/1.1 x", b""])),
                    (1, st.binary(max_size=10)))
NAMES = weighted((6, st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect",
                                      b"Content-Type", b"Upgrade", b"content-length", b"X-A"])),
                 (1, st.sampled_from([b"Content-Length ", b" X", b"", b"X\x00", b"\xff"])),
                 (1, st.binary(min_size=1, max_size=16)))
VALUES = weighted((6, st.sampled_from([b"0", b"3", b"-3", b"-35", b"abc", b"1_0", b"+3", b"0x3", b"99999999999999999999",
                                       b"chunked", b"gzip, chunked", b"chunked, gzip", b"close", b"keep-alive",
                                       b"Upgrade", b"100-continue", b"h2c", b"application/json", b"text/plain"])),
                  (1, st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"a\x00b", b"\x7f", b" 3 ", b""])),
                  (1, st.binary(max_size=24)))
FLOODS = weighted((20, st.just(b"")),
                  (1, st.integers(1, 12_000).map(lambda n: b"X-F: v\r\n" * n)),
                  (1, st.integers(60_000, 70_000).map(lambda n: b"X-Big: " + b"a" * n + b"\r\n")))


@st.composite
def chunked_body(draw):
    out = []
    for data in draw(st.lists(st.binary(max_size=40), max_size=4)):
        size = draw(weighted((6, st.just(b"%x" % len(data))),
                             (1, st.sampled_from([b"-6", b"zz", b"", b"7FFFFFFF", b"ffffffffffffffffff", b"0x3",
                                                  b"%x" % (len(data) + 1), b" 3"]))))
        extension = draw(weighted((6, st.just(b"")), (1, st.sampled_from([b";a=b", b";", b"; x", b";\xff"]))))
        out.append(size + extension + b"\r\n" + data + draw(CRLF))
    end = draw(weighted((5, st.just(b"0\r\n\r\n")), (1, st.sampled_from([b"0\r\nX-T: 1\r\n\r\n", b"0\r\n", b"",
                                                                         b"0;x\r\n\r\n", b"00\r\n\r\n"]))))
    return b"".join(out) + end


@st.composite
def request(draw):
    body = draw(weighted((4, st.just(b"")), (3, st.binary(max_size=64)), (1, st.integers(900, 1100).map(b"x".__mul__))))
    framing = draw(st.sampled_from(["length", "length", "none", "chunked", "both", "wrong-length"]))
    headers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=6))
    if framing in ("length", "both"):
        headers.append((b"Content-Length", b"%d" % len(body)))
    if framing == "wrong-length":
        headers.append((b"Content-Length", b"%d" % draw(st.integers(0, 200))))
    if framing in ("chunked", "both"):
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = draw(chunked_body())
    draw(st.randoms()).shuffle(headers)
    crlf = draw(CRLF)
    head = draw(METHODS) + b" " + draw(TARGETS) + b" " + draw(VERSIONS) + crlf
    head += b"".join(name + b": " + value + draw(CRLF) for name, value in headers) + draw(FLOODS)
    return head + crlf + body


@st.composite
def conversation(draw):
    prefix = draw(weighted((8, st.just(b"")), (1, st.sampled_from([b"\r\n", b"\r\n\r\n", b"\x16\x03\x01", b"\x00"]))))
    data = prefix + b"".join(draw(st.lists(request(), min_size=1, max_size=3)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    pause = draw(weighted((8, st.just(0.0)), (1, st.sampled_from([0.002, 0.01]))))
    ending = draw(weighted((8, st.just("half-close")), (1, st.sampled_from(["reset", "close"]))))
    return {"data": data, "cuts": cuts, "pause": pause, "ending": ending}


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
