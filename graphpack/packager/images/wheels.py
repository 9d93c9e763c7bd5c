"""Requirements without a network inside the build: wheels are downloaded on the host
(``pip download``, cached by requirement set) and, for the daemonless builder, installed
into a layer by the host's pip (``--target``), never by running a container."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ...errors import GraphpackError
from .baseimage import cache_dir
from .oci import BlobStore, Layer
from .tarball import Entry, tree_entries


def requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def download_wheels(requirements: list[str], dest: str | Path | None = None, with_pip: bool = True) -> Path:
    """A directory holding wheels for ``requirements`` and their dependencies (plus pip, which
    the Dockerfile runs from its wheel when the base has no pip). Cached by requirement set."""
    wanted = sorted(set(requirements) | ({"pip"} if with_pip else set()))
    key = hashlib.sha256(("\n".join(wanted) + f"\n{sys.version_info[:2]}").encode()).hexdigest()[:16]
    target = Path(dest) if dest else cache_dir() / "wheels" / key
    done = target / ".complete"
    if done.is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be downloading the same set
        if done.is_file():
            return target
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(target),
                *wanted]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode:
            raise GraphpackError(f"pip download {' '.join(wanted)} failed: {result.stderr.strip()[-600:]}")
        done.write_text("\n".join(wanted) + "\n")
    return target


def requirements_layer(requirements: bytes, wheels: Path, site_packages: str,
                       store: BlobStore | None = None) -> Layer | None:
    """One layer with ``requirements`` installed from ``wheels`` into ``site_packages`` (console
    scripts in /usr/local/bin); cached by (requirements, wheel digests, site dir). None when
    there is nothing to install."""
    lines = requirement_lines(requirements.decode())
    if not lines:
        return None
    store = store or BlobStore(cache_dir() / "blobs")
    wheel_files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    key_text = json.dumps({"requirements": lines, "site": site_packages, "python": list(sys.version_info[:2]),
                           "wheels": [[w.name, _file_digest(w)] for w in wheel_files]}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()
    index = cache_dir() / "layers" / f"{key}.json"
    try:
        saved = json.loads(index.read_text())
        if store.has(saved["digest"]):
            return Layer(saved["digest"], saved["size"], saved["diff_id"], path=str(store.path(saved["digest"])),
                         comment="requirements")
    except (OSError, ValueError, KeyError):
        pass
    with tempfile.TemporaryDirectory(prefix="graphpack-req-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_bytes(requirements)
        site = Path(tmp) / "site"
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels),
                "--target", str(site), "--no-compile", "--no-cache-dir", "--disable-pip-version-check",
                "--only-binary=:all:", "-r", str(req)]
        result = subprocess.run(argv, capture_output=True, text=True,
                                env={**os.environ, "PIP_NO_INPUT": "1", "SOURCE_DATE_EPOCH": "0"})
        if result.returncode:
            raise GraphpackError("installing the requirements from the wheels failed (download them with "
                                 f"`pip download -d WHEELS -r requirements.txt`): {result.stderr.strip()[-600:]}")
        entries = _site_entries(site, site_packages)
        layer = store.write_layer(entries, comment="requirements")
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text(json.dumps({"digest": layer.digest, "size": layer.size, "diff_id": layer.diff_id}))
    return layer


_SHEBANG = re.compile(rb"^#!.*python[0-9.]*[^\n]*\n")


def _site_entries(site: Path, site_packages: str) -> list[Entry]:
    """The installed tree under ``site_packages``; pip's bin/ scripts go to /usr/local/bin with
    the image's interpreter in their shebang."""
    entries: list[Entry] = []
    prefix = site_packages.strip("/")
    for entry in tree_entries(site, prefix):
        rel = entry.path[len(prefix) + 1:]
        if rel == "bin" or rel.startswith("bin/"):
            if entry.kind != "file":
                continue
            data = Path(entry.source or "").read_bytes()
            data = _SHEBANG.sub(b"#!/usr/bin/python3\n", data, count=1)
            entries.append(Entry("usr/local/bin/" + rel[4:], "file", 0o755, data=data))
            continue
        mode = 0o755 if entry.kind == "dir" else entry.mode
        entries.append(Entry(entry.path, entry.kind, mode if entry.kind != "file" else (entry.mode | 0o444) & 0o755,
                             entry.data, entry.source, entry.link))
    return entries


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["download_wheels", "requirement_lines", "requirements_layer"]
