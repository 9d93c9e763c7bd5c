"""Raw-socket HTTP for tests: send exact bytes, read every response the server sends back
(parsed by httptools' response parser, so framing errors on the server's side show up)."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)  # names lower-cased
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Collector:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.current: Response | None = None
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.current = Response(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.responses.append(self.current)
        self.current = None


def parse_responses(data: bytes) -> list[Response]:
    """The complete responses in ``data`` (a HEAD answer has no body: split it off first)."""
    collector = _Collector()
    try:
        collector.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"the server sent a malformed response ({exc}): {data[:300]!r}") from None
    return collector.responses


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, wait: float = 5.0) -> tuple[bytes, bool]:
    """What the server sends until it closes or ``wait`` seconds pass; (data, whether it closed)."""
    chunks = []
    sock.settimeout(wait)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    except socket.timeout:
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True


def exchange(port: int, data: bytes, half_close: bool = False, wait: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection; (everything received, whether the server closed)."""
    with connect(port, wait) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock, wait)
