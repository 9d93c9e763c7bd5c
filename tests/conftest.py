import os

import pytest

pytest_plugins = ["tests.plugins.s3", "tests.plugins.kafka", "tests.plugins.kube"]


@pytest.fixture(autouse=True, scope="session")
def _deployed_functions_run_in_clean_environments():
    """No test of a deployed function relies on the developer's venv: the local target runs each
    function with ``python -I`` in a venv of its own requirements.txt (packager/venvs.py), as its
    image would (CLI subprocesses inherit the setting)."""
    saved = os.environ.get("GRAPHPACK_LOCAL_ISOLATED")
    os.environ["GRAPHPACK_LOCAL_ISOLATED"] = "1"
    yield
    if saved is None:
        os.environ.pop("GRAPHPACK_LOCAL_ISOLATED", None)
    else:
        os.environ["GRAPHPACK_LOCAL_ISOLATED"] = saved
