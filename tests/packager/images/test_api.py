"""Every name in the image modules' __all__ exists; docker-py is imported only when used."""
import importlib
import subprocess
import sys

MODULES = ["", ".baseimage", ".builder", ".daemonless", ".docker_engine", ".dockerfile", ".oci", ".pipeline",
           ".publish", ".registry", ".tarball", ".testing", ".wheels"]


def test_all_names_exist():
    for suffix in MODULES:
        module = importlib.import_module("graphpack.packager.images" + suffix)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == [], module.__name__


def test_daemonless_builds_do_not_import_docker():
    code = ("import sys, graphpack.packager.images.daemonless, graphpack.packager.images.pipeline; "
            "print('docker' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
