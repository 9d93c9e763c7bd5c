"""The processor reads a built function's config from the JSON copy of function.yaml (without
importing PyYAML) only while that copy was written with function.yaml's current text."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml

from graphpack.errors import GraphpackError
from graphpack.runtime.function_config import CONFIG_JSON, load_config

PROJECT = textwrap.dedent('''
    import graphpack

    # graphpack: start
    def echo(body):
        return body
    # graphpack: end

    project = graphpack.get_or_create_project("cfg", ".")
    fn = project.set_function("project.py", name="echo")
    fn.set_topology("flow", engine="sync").to(handler="echo", name="echo").respond()
    fn.with_http(workers=2)
''')


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("cfg")
    (work / "project.py").write_text(PROJECT)
    subprocess.run([sys.executable, "-m", "graphpack.cli", "build", "-f", "project.py", "-o", "out", "--target",
                    "local"], cwd=work, check=True, capture_output=True, timeout=120)
    return work / "out" / "echo"


def copy_of(built, tmp_path):
    fdir = tmp_path / "fn"
    fdir.mkdir()
    for name in ("function.yaml", CONFIG_JSON):
        (fdir / name).write_bytes((built / name).read_bytes())
    return fdir


def test_the_json_copy_is_the_yaml_config_and_spares_the_yaml_import(built):
    assert load_config(built) == yaml.safe_load((built / "function.yaml").read_text())
    probe = ("import sys; from graphpack.runtime.function_config import load_config; "
             f"config = load_config({str(built)!r}); print(config['spec']['handler'], 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["graphpack_entry:handler", "False"]


def test_an_edited_function_yaml_is_read_as_yaml(built, tmp_path):
    fdir = copy_of(built, tmp_path)
    text = (fdir / "function.yaml").read_text()
    assert "numWorkers: 2" in text
    (fdir / "function.yaml").write_text(text.replace("numWorkers: 2", "numWorkers: 3"))
    assert load_config(fdir)["spec"]["triggers"]["http"]["numWorkers"] == 3


@pytest.mark.parametrize("copy", ["not json", "[]", '{"function.yaml": 1}', None])
def test_a_broken_or_missing_copy_is_ignored(built, tmp_path, copy):
    fdir = copy_of(built, tmp_path)
    if copy is None:
        (fdir / CONFIG_JSON).unlink()
    else:
        (fdir / CONFIG_JSON).write_text(copy)
    assert load_config(fdir) == load_config(built)


def test_a_copy_without_a_config_is_ignored(built, tmp_path):
    fdir = copy_of(built, tmp_path)
    data = json.loads((fdir / CONFIG_JSON).read_text())
    (fdir / CONFIG_JSON).write_text(json.dumps({"function.yaml": data["function.yaml"], "config": "x"}))
    assert load_config(fdir) == load_config(built)


def test_bad_yaml_is_one_line_error(tmp_path):
    (tmp_path / "function.yaml").write_text("spec: [unclosed")
    with pytest.raises(GraphpackError, match="is not valid YAML"):
        load_config(tmp_path)
