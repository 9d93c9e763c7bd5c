"""What goes over the wire for the http trigger: the request the app receives, the request
target turned into a path and query fields (as Nuclio's http trigger does), and response bytes.

Paths are percent-decoded and normalised before routing, like Nuclio's trigger (fasthttp):
``/v2/models/ir%69s/infer``, ``//v2/models/iris/infer``, ``/v2/models/x/../iris/infer`` and
``/v2/models/iris%2Finfer`` all reach ``/v2/models/iris/infer``. Query values that are empty
(``?z=``) are kept as ``""``.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qsl, unquote

REASONS = {100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Content Too Large",
           415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
           505: "HTTP Version Not Supported"}
SERVER_NAME = "graphpack"
_SERVER_LINE = b"Server: %s\r\n" % SERVER_NAME.encode()
#: response headers the server writes itself: an app's value for them is dropped (framing) or wins (the rest)
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


class Request:
    """A parsed request (what the app callable receives); ``path`` is decoded and normalised."""

    __slots__ = ("method", "path", "query", "headers", "body", "url", "content_type")

    def __init__(self, method: str, path: str, query: dict, headers: dict, body: bytes, url: str = "",
                 content_type: str = "") -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.url = url or path
        self.content_type = content_type


def normalise_path(path: str) -> str:
    """``path`` percent-decoded, without empty, ``.`` and ``..`` segments (a trailing ``/`` is kept)."""
    if "%" in path:
        path = unquote(path, errors="replace")
    if "//" not in path and "/." not in path:
        return path or "/"
    keep_slash = path.endswith(("/", "/.", "/.."))
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    out = "/" + "/".join(segments)
    return out + "/" if keep_slash and segments else out


def query_fields(query: str) -> dict:
    """The query string's fields (the last of repeated names wins; empty values are ``""``)."""
    return dict(parse_qsl(query, keep_blank_values=True, errors="replace"))


_PLAIN_PATHS: dict[bytes, str] = {}  # request targets seen that are plain paths (bounded: targets come from clients)


def split_target(target: bytes) -> tuple[str, dict]:
    """The normalised path and query fields of a request target (origin or absolute form).

    Raises ValueError for a target that is not a URL (authority form, ``*``, a broken URL).
    """
    plain = _PLAIN_PATHS.get(target)
    if plain is not None:
        return plain, {}
    if target[:1] == b"/" and b"?" not in target and b"%" not in target and b"/." not in target \
            and b"//" not in target and b"#" not in target:  # the common case: nothing to decode
        plain = target.decode("latin-1")
        if len(_PLAIN_PATHS) < 1024:
            _PLAIN_PATHS[target] = plain
        return plain, {}
    import httptools  # here: the mock server imports this module and needs no parser

    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise ValueError("malformed request target") from None
    path = url.path or b"/"
    if path[:1] != b"/":
        raise ValueError("the request target must be a path or an absolute URL")
    query = query_fields(url.query.decode("latin-1")) if url.query else {}
    return normalise_path(path.decode("latin-1")), query  # percent escapes are read as UTF-8


_STATUS_LINES: dict = {}  # (status, content type) -> the response's first lines, encoded
_date: tuple[float, bytes, bytes] = (0.0, b"", b"")  # (when it expires, the Date line, Date + Server lines)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _dated() -> tuple[float, bytes, bytes]:
    """(when it expires, the Date header line (IMF-fixdate), Date + Server lines), made once per second."""
    global _date
    now = time.time()
    if now >= _date[0]:
        second = int(now)
        t = time.gmtime(second)
        text = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        line = f"Date: {text}\r\n".encode()
        _date = (second + 1.0, line, line + _SERVER_LINE)
    return _date


def _header_lines(headers: dict) -> tuple[bytes, bool, bool]:
    """An app's response headers as lines (CR/LF removed), and whether it set Date / Server."""
    lines, has_date, has_server = [], False, False
    for key, value in headers.items():
        name = str(key).replace("\r", "").replace("\n", "").replace(":", "").strip()
        lower = name.lower()
        if not name or lower in _FRAMING:
            continue
        has_date = has_date or lower == "date"
        has_server = has_server or lower == "server"
        text = str(value).replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {text}\r\n")
    return "".join(lines).encode("latin-1", errors="replace"), has_date, has_server


def render(status: int, content_type: str, headers: dict, body: bytes, keep_alive: bool = True,
           head: bool = False) -> bytes:
    """The bytes of one response (headers only, with the body's length, for HEAD)."""
    start = _STATUS_LINES.get((status, content_type))
    if start is None:
        clean = content_type.replace("\r", " ").replace("\n", " ")  # no header injection
        start = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {clean}\r\n"
                 ).encode("latin-1", errors="replace")
        if len(_STATUS_LINES) < 512:  # bounded: content types may come from requests
            _STATUS_LINES[(status, content_type)] = start
    if headers:
        extra, has_date, has_server = _header_lines(headers)
        if not has_date:
            extra += _dated()[1]
        if not has_server:
            extra += _SERVER_LINE
    else:
        extra = _dated()[2]
    if not keep_alive:
        extra += b"Connection: close\r\n"
    return b"%sContent-Length: %d\r\n%s\r\n%s" % (start, len(body), extra, b"" if head else body)


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
