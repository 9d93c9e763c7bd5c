"""Data items for ``context.get_store_resource(url)`` and endpoint lookup in the deploy state.

A resource is chosen by URL scheme from one table (local paths, ``file://``, ``s3://``,
``http(s)://``); each offers ``.get()`` (bytes), ``.local()`` (a local path), ``.open()`` and
``.listdir()``. boto3 and httpx are imported only when an ``s3://`` / ``http`` URL is used.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import urlparse

from ..errors import GraphpackError
from .deps import require

STATE_ENV = "GRAPHPACK_STATE"
STATE_FILE = os.path.join(".graphpack", "state.json")
S3_ENDPOINT_ENVS = ("GRAPHPACK_S3_ENDPOINT", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


class StoreResource:
    """A readable item behind a URL (the interface every scheme implements)."""

    url: str

    def get(self, size: int | None = None, offset: int = 0, encoding: str | None = None) -> Any:
        """The item's bytes (``size`` bytes from ``offset``), or text when ``encoding`` is given."""
        raise NotImplementedError

    def local(self) -> str:
        """A local path holding the item (a file, or a directory for a prefix/folder)."""
        raise NotImplementedError

    def listdir(self) -> list[str]:
        """Names under a folder or prefix (relative, sorted)."""
        raise NotImplementedError

    def open(self, mode: str = "rb") -> IO[Any]:
        """A file object for reading (``mode`` "rb" or "r")."""
        if "r" not in mode:
            raise GraphpackError(f"{self.url}: only read modes are supported, not {mode!r}")
        return open(self.local(), mode)

    def is_dir(self) -> bool:
        return False

    def _slice(self, data: bytes, size: int | None, offset: int, encoding: str | None) -> Any:
        data = data[offset : offset + size if size is not None else None]
        return data.decode(encoding) if encoding else data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalResource(StoreResource):
    """A file or directory on the local filesystem (plain path or ``file://``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = urlparse(url).path if url.startswith("file://") else url

    def get(self, size: int | None = None, offset: int = 0, encoding: str | None = None) -> Any:
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(-1 if size is None else size)
        return data.decode(encoding) if encoding else data

    def local(self) -> str:
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file or directory: {self.path}")
        return self.path

    def listdir(self) -> list[str]:
        root = Path(self.path)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def is_dir(self) -> bool:
        return os.path.isdir(self.path)


class S3Resource(StoreResource):
    """An object (or a prefix ending in ``/``) in S3, through boto3."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise GraphpackError(f"s3 URL {url!r} has no bucket (expected s3://bucket/key)")
        self.url = url
        self.bucket = parsed.netloc
        self.key = parsed.path.lstrip("/")
        self._local: str | None = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        return s3_client(f"the s3:// path {self.url!r}")

    def _keys(self) -> list[str]:
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        keys: list[str] = []
        for page in self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return [k for k in keys if not k.endswith("/")]

    def is_dir(self) -> bool:
        if self.key.endswith("/") or not self.key:
            return True
        try:
            self._client().head_object(Bucket=self.bucket, Key=self.key)
            return False
        except Exception as exc:  # noqa: BLE001 - a missing object may still be a prefix
            if _s3_status(exc) not in (403, 404):
                raise _s3_error(self.url, exc) from exc
            return bool(self._keys())

    def get(self, size: int | None = None, offset: int = 0, encoding: str | None = None) -> Any:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if offset or size is not None:
            end = "" if size is None else str(offset + size - 1)
            args["Range"] = f"bytes={offset}-{end}"
        try:
            data = self._client().get_object(**args)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise _s3_error(self.url, exc) from exc
        return data.decode(encoding) if encoding else data

    def listdir(self) -> list[str]:
        prefix = self.key if not self.key or self.key.endswith("/") else self.key + "/"
        return sorted(k[len(prefix) :] for k in self._keys())

    def local(self) -> str:
        with self._lock:
            if self._local and os.path.exists(self._local):
                return self._local
            tmp = tempfile.mkdtemp(prefix="graphpack-s3-")
            if self.is_dir():
                for name in self.listdir():
                    target = os.path.join(tmp, name)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    key = (self.key.rstrip("/") + "/" + name) if self.key else name
                    self._download(key, target)
                self._local = tmp
            else:
                target = os.path.join(tmp, os.path.basename(self.key))
                self._download(self.key, target)
                self._local = target
            return self._local

    def _download(self, key: str, target: str) -> None:
        try:
            self._client().download_file(self.bucket, key, target)
        except Exception as exc:  # noqa: BLE001 - translated in one place
            raise _s3_error(f"s3://{self.bucket}/{key}", exc) from exc


class HttpResource(StoreResource):
    """A file behind an ``http(s)://`` URL, fetched with httpx."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._data: bytes | None = None
        self._local: str | None = None

    def _fetch(self) -> bytes:
        if self._data is None:
            httpx = require("httpx", "httpx", f"the http(s) resource {self.url!r}")
            try:
                response = httpx.get(self.url, follow_redirects=True, timeout=60)
            except httpx.HTTPError as exc:
                raise GraphpackError(f"failed to fetch {self.url}: {exc}") from exc
            if response.status_code >= 400:
                raise GraphpackError(f"failed to fetch {self.url}: HTTP {response.status_code}")
            self._data = response.content
        return self._data

    def get(self, size: int | None = None, offset: int = 0, encoding: str | None = None) -> Any:
        return self._slice(self._fetch(), size, offset, encoding)

    def local(self) -> str:
        if self._local is None or not os.path.exists(self._local):
            name = os.path.basename(urlparse(self.url).path) or "download"
            target = os.path.join(tempfile.mkdtemp(prefix="graphpack-http-"), name)
            with open(target, "wb") as f:
                f.write(self._fetch())
            self._local = target
        return self._local

    def listdir(self) -> list[str]:
        raise GraphpackError(f"cannot list {self.url}: http URLs are single files")


SCHEMES: dict[str, Callable[[str], StoreResource]] = {
    "": LocalResource,
    "file": LocalResource,
    "s3": S3Resource,
    "http": HttpResource,
    "https": HttpResource,
}

_cache: dict[str, StoreResource] = {}
_cache_lock = threading.Lock()


def get_store_resource(url: str, use_cache: bool = True) -> StoreResource:
    """The resource for ``url``, chosen by scheme (cached per URL unless ``use_cache=False``)."""
    if not url:
        raise GraphpackError("get_store_resource: empty URL")
    scheme = urlparse(url).scheme.lower() if "://" in url else ""
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    factory = SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(f"{s}://" for s in SCHEMES if s)) + " or a local path"
        raise GraphpackError(f"unsupported URL scheme {scheme!r} in {url!r}; use {known}")
    if not use_cache:
        return factory(url)
    with _cache_lock:
        if url not in _cache:
            _cache[url] = factory(url)
        return _cache[url]


def clear_cache() -> None:
    """Forget cached resources (their downloaded local copies are left in place)."""
    with _cache_lock:
        _cache.clear()


def s3_client(feature: str = "an s3:// path") -> Any:
    """A boto3 S3 client; the endpoint comes from the first of ``S3_ENDPOINT_ENVS`` that is set."""
    boto3 = require("boto3", "boto3", feature)
    endpoint = next((os.environ[e] for e in S3_ENDPOINT_ENVS if os.environ.get(e)), None)
    return boto3.client("s3", endpoint_url=endpoint)


def _s3_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        if status is not None:
            return int(status)
        code = response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            return 404
    return None


def _s3_error(url: str, exc: BaseException) -> Exception:
    status = _s3_status(exc)
    if status == 404:
        return FileNotFoundError(f"not found: {url}")
    return GraphpackError(f"S3 request for {url} failed: {exc}")


def endpoint_from_state(name: str, state_path: str | None = None) -> str | None:
    """The invoke URL of function ``name`` from the local deploy state, or None.

    Reads ``$GRAPHPACK_STATE`` or ``.graphpack/state.json`` in the current directory; a
    missing or unreadable file, or a function not in it, gives None.
    """
    path = state_path or os.environ.get(STATE_ENV) or STATE_FILE
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return _find_endpoint(state, name)


_URL_KEYS = ("url", "endpoint", "invoke_url", "external_url", "address", "internal_url")


def _find_endpoint(state: Any, name: str) -> str | None:
    if not isinstance(state, dict):
        return None
    for container in (state.get("functions"), state.get("endpoints"), state):
        if isinstance(container, list):
            container = {str(item.get("name")): item for item in container if isinstance(item, dict)}
        if not isinstance(container, dict):
            continue
        entry = container.get(name)
        if entry is None:  # deployed names may carry a project prefix ("proj-name")
            entry = next((v for k, v in container.items() if k.endswith(f"-{name}")), None)
        if isinstance(entry, str) and "://" in entry:
            return entry
        if isinstance(entry, dict):
            for key in _URL_KEYS:
                value = entry.get(key)
                if isinstance(value, str) and value:
                    return value if "://" in value else f"http://{value}"
    return None


__all__ = [
    "StoreResource",
    "LocalResource",
    "S3Resource",
    "HttpResource",
    "SCHEMES",
    "get_store_resource",
    "clear_cache",
    "s3_client",
    "endpoint_from_state",
]
