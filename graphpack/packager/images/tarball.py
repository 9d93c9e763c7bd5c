"""Reproducible layer tarballs: sorted entries, mtime 0, uid/gid 0 (unless asked), fixed modes,
a gzip header without name or time. The writer hashes as it goes, so a layer's diff_id
(sha256 of the tar) and digest (sha256 of the gzip) come out of one pass."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

GZIP_LEVEL = 6


@dataclass(frozen=True)
class Entry:
    """One tar member: a regular file (``data`` or ``source``), a directory or a symlink."""

    path: str                 # relative, posix, no leading "/"
    kind: str = "file"        # "file", "dir", "symlink"
    mode: int = 0o644
    data: bytes | None = None
    source: str | None = None  # read the file's bytes from here instead of ``data``
    link: str = ""
    uid: int = 0
    gid: int = 0


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: BinaryIO | None) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)


@dataclass(frozen=True)
class LayerBlob:
    """What writing a layer produced: gzip digest and size, and the tar's diff_id."""

    digest: str
    size: int
    diff_id: str


def normalize(path: str) -> str:
    clean = PurePosixPath("/" + path.replace("\\", "/")).as_posix().lstrip("/")
    if not clean or ".." in PurePosixPath(clean).parts:
        raise ValueError(f"bad layer path {path!r}")
    return clean


def with_parents(entries: Iterable[Entry], dir_mode: int = 0o755) -> list[Entry]:
    """The entries plus a directory entry for every parent not listed, sorted by path."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = normalize(entry.path)
        by_path[path] = Entry(path, entry.kind, entry.mode, entry.data, entry.source, entry.link,
                              entry.uid, entry.gid)
    for path in list(by_path):
        parent = PurePosixPath(path).parent
        while parent.as_posix() not in (".", ""):
            by_path.setdefault(parent.as_posix(), Entry(parent.as_posix(), "dir", dir_mode))
            parent = parent.parent
    return [by_path[p] for p in sorted(by_path)]


def write_layer(entries: Iterable[Entry], out: BinaryIO, level: int = GZIP_LEVEL) -> LayerBlob:
    """Write a gzipped tar of ``entries`` (parents added, sorted) to ``out``."""
    compressed = _Hashing(out)
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=level, mtime=0) as gz:
        plain = _Hashing(gz)  # type: ignore[arg-type]
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for entry in with_parents(entries):
                _add(tar, entry)
    return LayerBlob("sha256:" + compressed.sha.hexdigest(), compressed.size, "sha256:" + plain.sha.hexdigest())


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.path + ("/" if entry.kind == "dir" else ""))
    info.mtime = 0
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode & 0o7777
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link
        tar.addfile(info)
    elif entry.source is not None:
        with open(entry.source, "rb") as handle:
            info.size = os.fstat(handle.fileno()).st_size
            tar.addfile(info, handle)
    else:
        data = entry.data or b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def tree_entries(root: str | Path, prefix: str = "", uid: int = 0, gid: int = 0) -> list[Entry]:
    """Entries for everything under ``root`` (files, dirs, symlinks; modes kept, owners fixed),
    placed under ``prefix`` in the layer. Hard links become copies; devices and sockets are left out."""
    root = Path(root)
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames) + sorted(filenames):
            full = base / name
            rel = (PurePosixPath(prefix) / full.relative_to(root).as_posix()).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", 0o777, link=os.readlink(full), uid=uid, gid=gid))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", stat.S_IMODE(st.st_mode), uid=uid, gid=gid))
            elif stat.S_ISREG(st.st_mode):
                entries.append(Entry(rel, "file", stat.S_IMODE(st.st_mode), source=str(full), uid=uid, gid=gid))
    return entries


def read_members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    """The members of a gzipped layer by path (for tests and inspection)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


__all__ = ["Entry", "LayerBlob", "read_members", "tree_entries", "with_parents", "write_layer"]
