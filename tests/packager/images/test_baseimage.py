"""graphpack's base image from Debian packages (baseimage.py): content and reproducibility."""
import json

from graphpack.packager.images import baseimage
from graphpack.packager.images.builder import layer_files


def test_base_image_content(base_image):
    assert len(base_image.layers) == 1
    diff_id, members, raw = layer_files(base_image.layers[0].read())
    assert diff_id == base_image.layers[0].diff_id
    assert members["usr/bin/python3"].issym() and "usr/bin/python3.11" in members
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert "usr/lib/python3.11/EXTERNALLY-MANAGED" not in members      # pip may install into /usr/local
    assert members["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
    assert not any(name.startswith(("usr/share/doc/", "var/lib/dpkg/")) for name in members)
    config = json.loads(base_image.config_blob())
    labels = config["config"]["Labels"]
    assert labels[baseimage.LABEL_SITE] == "/usr/local/lib/python3.11/dist-packages"
    assert "User" not in config["config"]           # builds install as root; function images set USER


def test_forced_rebuild_gives_the_same_digest(base_image):
    again = baseimage.build_base(force=True)
    assert again.digest == base_image.digest
    assert again.layers[0].digest == base_image.layers[0].digest
