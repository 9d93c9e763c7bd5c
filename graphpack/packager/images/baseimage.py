"""The base image (``graphpack base-image``): Debian's python3 and its .deb closure unpacked
into a rootfs (no container, no registry pull), one reproducible layer, a non-root user in
/etc/passwd (function images switch to it; the base stays root so builds can install).

Cached by content under ``$GRAPHPACK_CACHE/images``: the key is the recipe version plus the
exact .deb files (names and SHA256 from apt), so the same Debian packages give the same layer
and the same image digest on any machine."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ...errors import GraphpackError
from .oci import BlobStore, Image, append, load, new_config, save
from .tarball import tree_entries

RECIPE = "graphpack-base-3"
PACKAGES = ("python3", "dash", "coreutils", "grep", "sed", "findutils")
# pulled in only by maintainer scripts or docs we never run or keep
EXCLUDE = {"dpkg", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "install-info", "mailcap",
           "mime-support", "libgdbm-compat4", "libdb5.3", "tar", "debianutils"}
DROP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
        "usr/share/bug", "var/cache", "var/lib/dpkg", "var/log",
        # the image is ours: pip installs into /usr/local without PEP 668's refusal
        "usr/lib/python3.11/EXTERNALLY-MANAGED")
USER_ID = 10001
PYTHON = "3.11"
SITE_PACKAGES = f"/usr/local/lib/python{PYTHON}/dist-packages"
LABEL_PYTHON = "org.graphpack.python"
LABEL_SITE = "org.graphpack.site-packages"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Progress = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("GRAPHPACK_CACHE") or Path.home() / ".cache" / "graphpack") / "images"


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GraphpackError(f"{argv[0]} is not installed (the base image is built from Debian packages)") from None
    if done.returncode:
        raise GraphpackError(f"{' '.join(argv[:3])} ... failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def closure(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """The Debian packages ``packages`` need (Depends/Pre-Depends, recursively), minus EXCLUDE."""
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *packages])
    names = {line.strip() for line in out.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(names - EXCLUDE)


def deb_uris(packages: list[str]) -> list[tuple[str, str, str]]:
    """(uri, file name, sha256) of each package's candidate .deb."""
    out = _run(["apt-get", "download", "--print-uris", *packages])
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].startswith("SHA256:"):
            rows.append((parts[0].strip("'"), parts[1], parts[3][len("SHA256:"):]))
    if len(rows) != len(packages):
        raise GraphpackError(f"apt knows {len(rows)} of {len(packages)} base packages (run `apt-get update`)")
    return sorted(rows, key=lambda r: r[1])


def _apt_lists_stamp() -> str:
    lists = sorted(Path("/var/lib/apt/lists").glob("*_Packages*"))
    return hashlib.sha256("".join(f"{p.name}:{p.stat().st_mtime_ns}\n" for p in lists).encode()).hexdigest()[:16]


def base_key(debs: list[tuple[str, str, str]]) -> str:
    text = RECIPE + "\n" + "".join(f"{name} {digest}\n" for _, name, digest in debs)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _download(debs: list[tuple[str, str, str]], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    missing = [name for _, name, digest in debs if not _verified(directory / name, digest)]
    if missing:
        names = [name.split("_")[0] + "=" + name.split("_")[1].replace("%3a", ":") for name in missing]
        _run(["apt-get", "download", *names], cwd=directory)
    paths = []
    for _, name, digest in debs:
        path = directory / name
        if not _verified(path, digest):
            raise GraphpackError(f"downloaded {name} does not match apt's SHA256")
        paths.append(path)
    return paths


def _verified(path: Path, digest: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest


def _unpack(debs: list[Path], rootfs: Path) -> None:
    for sub in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (rootfs / link).symlink_to(f"usr/{link}")
    for deb in debs:
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        with fsys:
            tar = subprocess.run(["tar", "-x", "--keep-directory-symlink", "--no-same-owner", "-C", str(rootfs)],
                                 stdin=fsys.stdout, capture_output=True)
        if fsys.returncode or tar.returncode:
            raise GraphpackError(f"cannot unpack {deb.name}: {tar.stderr.decode(errors='replace')[-300:]}")
    for drop in DROP:
        target = rootfs / drop
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                f"graphpack:x:{USER_ID}:{USER_ID}:graphpack:/tmp:/usr/sbin/nologin\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\ngraphpack:x:{USER_ID}:\nnogroup:x:65534:\n")
    os.chmod(etc / "passwd", 0o644)
    os.chmod(etc / "group", 0o644)
    if not (rootfs / "bin/sh").exists():
        (rootfs / "usr/bin/sh").symlink_to("dash")
    for sub, mode in (("tmp", 0o1777), ("root", 0o700), ("opt", 0o755), (SITE_PACKAGES.lstrip("/"), 0o755)):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(rootfs / sub, mode)


def build_base(progress: Progress | None = None, force: bool = False) -> Image:
    """The graphpack base image (built once per set of Debian packages, then read from the cache)."""
    say = progress or (lambda message: None)
    root = cache_dir()
    store = BlobStore(root / "blobs")
    index_path = root / "base-index.json"
    stamp = f"{RECIPE}:{_apt_lists_stamp()}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    cached = index.get(stamp)
    if cached and not force and store.has(cached["digest"]):
        return load(store, cached["digest"])
    debs = deb_uris(closure())
    key = base_key(debs)
    by_key = root / "base" / f"{key}.json"
    if by_key.is_file() and not force:
        digest = json.loads(by_key.read_text())["digest"]
        if store.has(digest):
            _remember(index_path, index, stamp, key, digest)
            return load(store, digest)
    say(f"building the base image from {len(debs)} Debian packages (key {key})")
    say(f"downloading {len(debs)} .deb files (apt-get download; cached under {root / 'debs'})")
    paths = _download(debs, root / "debs")
    say(f"unpacking {len(paths)} .deb files and writing the layer")
    with tempfile.TemporaryDirectory(prefix="graphpack-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        umask = os.umask(0o022)   # directories tar creates implicitly: same modes on any machine
        try:
            _unpack(paths, rootfs)
        finally:
            os.umask(umask)
        layer = store.write_layer(tree_entries(rootfs), comment="debian python3 closure")
    container = {
        "Env": [f"PATH={PATH}", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"],
        "Cmd": ["python3"],
        "WorkingDir": "/tmp",
        "Labels": {LABEL_PYTHON: PYTHON, LABEL_SITE: SITE_PACKAGES, "org.graphpack.base": key},
    }
    image = append(Image(new_config(container)), layer, f"graphpack base-image: {' '.join(PACKAGES)} ({key})")
    save(image, store)
    by_key.parent.mkdir(parents=True, exist_ok=True)
    by_key.write_text(json.dumps({"digest": image.digest, "debs": [name for _, name, _ in debs]}, indent=1))
    _remember(index_path, index, stamp, key, image.digest)
    say(f"base image {image.digest} ({layer.size / 1e6:.1f} MB compressed)")
    return image


def _remember(path: Path, index: dict, stamp: str, key: str, digest: str) -> None:
    index = {stamp: {"key": key, "digest": digest}}  # one apt state at a time
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index))
    tmp.replace(path)


BASE_REPO = "graphpack/python"


def base_tag(image: Image) -> str:
    return f"{PYTHON}-{(image.container_config.get('Labels') or {}).get('org.graphpack.base', 'local')}"


__all__ = ["BASE_REPO", "LABEL_PYTHON", "LABEL_SITE", "SITE_PACKAGES", "USER_ID", "base_tag", "build_base",
           "cache_dir", "closure"]
