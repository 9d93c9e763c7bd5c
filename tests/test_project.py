"""Projects: set_function from files or names, save/load of graphpack.yaml."""
import pytest

import graphpack
from graphpack import GraphpackError

CODE = '''
class Double:
    def do(self, x):
        return x * 2
'''


def test_set_function_from_file_resolves_classes_there(tmp_path):
    (tmp_path / "serving.py").write_text(CODE)
    project = graphpack.get_or_create_project("shop", str(tmp_path))
    fn = project.set_function("serving.py", name="rec", kind="serving", image="python:3.11-slim",
                              requirements=["scikit-learn"])
    fn.set_topology("flow", engine="sync").to(class_name="Double", name="d").respond()
    assert fn.to_mock_server().test("/", 21) == 42
    assert project.get_function("rec") is fn


def test_save_and_load_give_equal_specs(tmp_path):
    (tmp_path / "serving.py").write_text(CODE)
    project = graphpack.get_or_create_project("shop", str(tmp_path))
    fn = project.set_function("serving.py", name="rec")
    fn.set_topology("flow").to(class_name="Double", name="d").respond()
    fn.spec.parameters = {"p": 1}
    path = project.save()
    assert path.name == "graphpack.yaml"
    loaded = graphpack.get_or_create_project("shop", str(tmp_path))
    assert loaded.get_function("rec").to_dict() == fn.to_dict()
    assert loaded.get_function("rec").to_mock_server().test("/", 2) == 4


def test_project_errors(tmp_path):
    project = graphpack.get_or_create_project("shop", str(tmp_path))
    with pytest.raises(GraphpackError, match="code file .*missing.py.* does not exist"):
        project.set_function("missing.py", name="x")
    with pytest.raises(GraphpackError, match="has no function 'nope'"):
        project.get_function("nope")
    project.save()
    with pytest.raises(GraphpackError, match="holds project 'shop', not 'other'"):
        graphpack.get_or_create_project("other", str(tmp_path))
    (tmp_path / "graphpack.yaml").write_text("kind: [unclosed")
    with pytest.raises(GraphpackError, match="not valid YAML"):
        graphpack.load_project(str(tmp_path))


def test_notebook_code_with_markers(tmp_path):
    import json

    cells = [
        {"cell_type": "code", "source": ["import graphpack\n"]},
        {"cell_type": "code", "source": ["# graphpack: start\n", "class Inc:\n", "    def do(self, x):\n",
                                         "        return x + 1\n", "# graphpack: end\n"]},
        {"cell_type": "code", "source": ["raise RuntimeError('not function code')\n"]},
    ]
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": cells}))
    project = graphpack.get_or_create_project("nb", str(tmp_path))
    fn = project.set_function("nb.ipynb", name="inc")
    fn.set_topology("flow", engine="sync").to(class_name="Inc", name="i").respond()
    assert fn.to_mock_server().test("/", 1) == 2
