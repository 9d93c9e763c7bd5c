"""Reproducible layer tarballs (tarball.py)."""
import gzip
import hashlib
import io
import os
import tarfile

from graphpack.packager.images.tarball import Entry, tree_entries, with_parents, write_layer


def layer(entries):
    out = io.BytesIO()
    blob = write_layer(entries, out)
    return blob, out.getvalue()


def test_same_entries_in_any_order_give_the_same_bytes():
    entries = [Entry("opt/app/b.py", data=b"b"), Entry("opt/app/a.py", data=b"a", mode=0o755),
               Entry("usr/local/bin/tool", "symlink", link="/opt/app/a.py")]
    first, data1 = layer(entries)
    second, data2 = layer(list(reversed(entries)))
    assert data1 == data2 and first == second
    assert first.digest == "sha256:" + hashlib.sha256(data1).hexdigest()
    assert first.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data1)).hexdigest()
    assert first.size == len(data1)


def test_gzip_header_has_no_name_or_time():
    _, data = layer([Entry("x", data=b"x")])
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] == 0                      # flags: no FNAME, no comment
    assert data[4:8] == b"\0\0\0\0"          # mtime 0


def test_members_are_sorted_with_parents_and_fixed_owner_and_time():
    _, data = layer([Entry("opt/app/z.txt", data=b"z"), Entry("etc/conf", data=b"c", uid=10001, gid=10001)])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name.rstrip("/") for m in members]
    assert names == ["etc", "etc/conf", "opt", "opt/app", "opt/app/z.txt"]
    assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in members)
    assert {(m.name.rstrip("/"), m.uid) for m in members if m.isfile()} == {("etc/conf", 10001), ("opt/app/z.txt", 0)}
    assert [m.mode for m in members if m.isdir()] == [0o755, 0o755, 0o755]


def test_bad_paths_are_refused():
    import pytest

    with pytest.raises(ValueError):
        with_parents([Entry("../etc/passwd", data=b"")])


def test_tree_entries_keep_modes_and_symlinks_and_ignore_mtimes(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run").write_text("#!/bin/sh\n")
    os.chmod(root / "bin" / "run", 0o755)
    (root / "data.txt").write_text("d")
    os.symlink("bin/run", root / "link")
    first, data1 = layer(tree_entries(root, "opt"))
    os.utime(root / "data.txt", (12345, 12345))
    second, data2 = layer(tree_entries(root, "opt"))
    assert data1 == data2
    with tarfile.open(fileobj=io.BytesIO(data1)) as tar:
        by_name = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert by_name["opt/bin/run"].mode == 0o755
    assert by_name["opt/data.txt"].mode & 0o777 == os.stat(root / "data.txt").st_mode & 0o777
    assert by_name["opt/link"].issym() and by_name["opt/link"].linkname == "bin/run"
