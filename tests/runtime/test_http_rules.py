"""`graphpack serve`'s HTTP/1.1 front door over raw sockets: framing rules (RFC 9112), limits,
keep-alive, pipelining, HEAD, 100-continue, half-closed clients, path normalisation."""
import json
import socket
import time
from pathlib import Path

import pytest

from .rawhttp import connect, exchange, parse_responses, read_all

CLOSE = b"GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from .test_processor import Served, make_function

    s = Served(make_function(tmp_path_factory.mktemp("rules")))
    yield s
    s.stop()
    assert "Traceback" not in s.output and "Fatal error" not in s.output, s.output[-3000:]


def ask(server, data, **kw):
    received, closed = exchange(server.port, data, **kw)
    return parse_responses(received), closed, received


def assert_standard_headers(response):
    assert response.header("server") == "graphpack"
    assert response.header("date", ).endswith(" GMT")


def post(path=b"/", body=b"{}", extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path, len(body), extra, body))


@pytest.mark.parametrize("header", [b"Content-Length: -3", b"Content-Length: abc", b"Content-Length: 1_0",
                                    b"Content-Length: 3\r\nContent-Length: 3",
                                    b"Content-Length: 3\r\nContent-Length: 4",
                                    b"Content-Length: 3\r\nTransfer-Encoding: chunked",
                                    b"Transfer-Encoding: chunked\r\nContent-Length: 3"])
def test_bad_content_length_is_400_and_closes(server, header):
    responses, closed, _ = ask(server, b"POST / HTTP/1.1\r\nHost: t\r\n%s\r\n\r\nabc" % header + CLOSE)
    assert [r.status for r in responses] == [400] and closed
    assert responses[0].header("connection") == "close" and b"malformed request" in responses[0].body
    assert_standard_headers(responses[0])


def test_negative_length_cannot_smuggle_a_second_request(server):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    data = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -%d\r\n\r\n%s" % (len(smuggled), smuggled)
    responses, closed, raw = ask(server, data)
    assert [r.status for r in responses] == [400] and closed and b"smuggled" not in raw


@pytest.mark.parametrize("chunks", [b"zz\r\nabc\r\n0\r\n\r\n", b"-6\r\nabcdef\r\n0\r\n\r\n",
                                    b"3\r\nabcd\r\n0\r\n\r\n", b"3;\x00\r\nabc\r\n0\r\n\r\n",
                                    b"\r\nabc\r\n0\r\n\r\n"])
def test_bad_chunk_framing_is_400(server, chunks):
    data = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    responses, closed, _ = ask(server, data)
    assert [r.status for r in responses] == [400] and closed
    assert ask(server, CLOSE)[0][0].status == 200  # the worker is still there, not spinning


def test_chunked_body_is_decoded(server):
    data = (b"POST /c HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
    responses, closed, _ = ask(server, data)
    assert responses[0].status == 200 and json.loads(responses[0].body)["body"] == "abcdefg" and closed


def test_huge_chunk_size_is_413_naming_the_limit(server):
    start = time.monotonic()
    data = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7FFFFFFF\r\n" + b"x" * 4000
    responses, closed, _ = ask(server, data)
    assert [r.status for r in responses] == [413] and closed and time.monotonic() - start < 3
    assert b"exceeds the limit of 1000 bytes" in responses[0].body
    assert_standard_headers(responses[0])


def test_declared_body_over_the_limit_is_413_before_the_body_is_read(server):
    with connect(server.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        received, closed = read_all(sock)
    response = parse_responses(received)[0]
    assert response.status == 413 and closed
    assert response.body == b"request body of 5000 bytes exceeds the limit of 1000 bytes"


@pytest.mark.parametrize("head", [b"X-Big: " + b"a" * 70_000 + b"\r\n",
                                  b"".join(b"X-%d: v\r\n" % i for i in range(12_000)),
                                  b"X-Slow: " + b"a" * 200_000])  # never ends
def test_header_section_over_the_limit_is_431(server, head):
    data = b"GET / HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n"
    responses, closed, _ = ask(server, data)
    assert [r.status for r in responses] == [431] and closed
    assert b"exceeds the limit of 65536 bytes" in responses[0].body


@pytest.mark.parametrize("count", [700, 7000])  # ~75 KB in one read, ~750 KB over several
def test_trailer_fields_count_toward_the_header_limit(server, count):
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 100) for i in range(count))
    data = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + trailers + b"\r\n"
    responses, closed, _ = ask(server, data)
    assert [r.status for r in responses] == [431] and closed
    assert ask(server, CLOSE)[0][0].status == 200


def test_head_gets_headers_only_and_the_next_answer_is_intact(server):
    data = b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" + CLOSE
    received, closed = exchange(server.port, data)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in head and b"Content-Length: 0" not in head
    second = parse_responses(rest)
    assert rest.startswith(b"HTTP/1.1 200 ") and json.loads(second[0].body)["path"] == "/last" and closed


def test_pipelined_requests_are_answered_in_order(server):
    data = (post(b"/one", b'{"n": 1}') + b"GET /two?x=2 HTTP/1.1\r\nHost: t\r\n\r\n"
            + post(b"/sleep", b"0.2", b"Content-Type: text/plain\r\n") + post(b"/four", b'{"n": 4}') + CLOSE)
    responses, closed, _ = ask(server, data)
    assert [json.loads(r.body)["path"] for r in responses] == ["/one", "/two", "/sleep", "/four", "/last"]
    assert all(r.status == 200 for r in responses) and closed
    assert json.loads(responses[1].body)["query"] == {"x": "2"}
    for response in responses:
        assert_standard_headers(response)


def test_connection_close_and_http10_close_after_the_answer(server):
    responses, closed, _ = ask(server, CLOSE + b"GET /ignored HTTP/1.1\r\n\r\n")
    assert [r.status for r in responses] == [200] and closed and responses[0].header("connection") == "close"
    responses, closed, _ = ask(server, b"GET /old HTTP/1.0\r\n\r\n")
    assert [r.status for r in responses] == [200] and closed
    with connect(server.port) as sock:  # HTTP/1.1 without Connection: close stays open
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        received, closed = read_all(sock, wait=0.5)
        assert parse_responses(received)[0].status == 200 and not closed


def test_expect_100_continue_is_answered_before_the_body(server):
    with connect(server.port) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        received, _ = read_all(sock)
    response = parse_responses(received)[0]
    assert response.status == 200 and json.loads(response.body)["body"] == "hello"


def test_expect_100_continue_over_the_limit_is_413_without_continue(server):
    received, closed = exchange(server.port, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                                             b"Expect: 100-continue\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 413 ") and closed


def test_half_closed_client_still_gets_its_answer(server):
    slow = post(b"/sleep", b"0.05", b"Content-Type: text/plain\r\nConnection: close\r\n")
    assert ask(server, slow)[0][0].status == 200  # events are now slow: the next runs on the handler thread
    data = post(b"/sleep", b"0.3", b"Content-Type: text/plain\r\n")
    responses, closed, _ = ask(server, data, half_close=True)
    assert [r.status for r in responses] == [200] and closed
    assert json.loads(responses[0].body)["path"] == "/sleep"


@pytest.mark.parametrize("target", [b"http://[::1?a=1", b"host:443", b"*", b"/a b", b"/\xff"])
def test_malformed_targets_are_400(server, target):
    responses, closed, _ = ask(server, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target)
    assert [r.status for r in responses] == [400] and closed


def test_unsupported_version_coding_and_expectation(server):
    assert ask(server, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n")[0][0].status == 505
    assert ask(server, b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")[0][0].status == 501
    assert ask(server, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")[0][0].status == 400
    assert ask(server, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")[0][0].status == 400
    assert ask(server, b"GET / HTTP/1.1\r\nHost: t\r\nExpect: tea\r\n\r\n")[0][0].status == 417


def test_declined_upgrade_is_answered_as_http11(server):
    data = b"GET /u HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + CLOSE
    responses, closed, _ = ask(server, data)
    assert [json.loads(r.body)["path"] for r in responses] == ["/u", "/last"] and closed


@pytest.mark.parametrize("target, path, query", [
    (b"/v2/models/ir%69s/infer", "/v2/models/iris/infer", {}),
    (b"//v2/models/iris/infer", "/v2/models/iris/infer", {}),
    (b"/v2/models/x/../iris/infer", "/v2/models/iris/infer", {}),
    (b"/v2/models/iris%2Finfer", "/v2/models/iris/infer", {}),
    (b"/v2/models/", "/v2/models/", {}),
    (b"/a/./b/..?z=&y=1&y=2&s=a+b%21", "/a/", {"z": "", "y": "2", "s": "a b!"}),
    (b"http://example.com/abs/path?q=1", "/abs/path", {"q": "1"}),
    (b"/caf%C3%A9", "/café", {}),
])
def test_paths_are_decoded_and_normalised_and_empty_values_kept(server, target, path, query):
    responses, _, _ = ask(server, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % target)
    assert responses[0].status == 200
    answer = json.loads(responses[0].body)
    assert (answer["path"], answer["query"]) == (path, query)


def test_errors_and_answers_carry_date_and_server(server):
    for data in (CLOSE, b"BROKEN\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 9999\r\n\r\n"):
        responses, _, _ = ask(server, data)
        assert responses and all(r.header("server") == "graphpack" and r.header("date") for r in responses)


def test_reset_mid_request_leaves_the_worker_serving(server):
    for _ in range(3):
        sock = connect(server.port)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST
    assert ask(server, CLOSE)[0][0].status == 200


def test_a_client_that_never_reads_its_answers_is_not_read_from(server):
    """Back-pressure: pipelining without reading stops being read once answers back up, so the
    worker's memory stays bounded and other clients are still served."""
    def rss_kb(pid):
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

    request = b"GET /p?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    before = rss_kb(server.proc.pid)
    with connect(server.port) as sock:
        sock.setblocking(False)
        sent, deadline = 0, time.monotonic() + 3
        while time.monotonic() < deadline and sent < 200_000_000:
            try:
                sent += sock.send(request * 2000)
            except BlockingIOError:
                time.sleep(0.05)  # the kernel buffers are full: the server stopped reading
        assert sent < 200_000_000, "the server read everything a client that never reads sent"
        assert ask(server, CLOSE)[0][0].status == 200  # another client is served meanwhile
        grown = rss_kb(server.proc.pid) - before
        assert grown < 50_000


def test_response_header_injection_is_neutralised():
    from graphpack.runtime.http_wire import render

    raw = render(200, "text/plain\r\nSet-Cookie: a=1", {"X-A": "b\r\nSet-Cookie: c=2", "Bad\r\nName": "v"}, b"ok")
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not any(line.lower().startswith(b"set-cookie") for line in head), head
    assert raw.endswith(b"\r\n\r\nok") and b"Content-Length: 2\r\n" in raw
